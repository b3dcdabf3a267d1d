//! Fuzz the GGUF header parser: any input must give either a header whose every tensor lies
//! aligned inside the input and whose getters do not panic, or a one-line error.

#![no_main]

use infer::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GgufFile::from_bytes(data.to_vec()) {
        Ok(f) => {
            let len = data.len() as u64;
            for t in f.tensors() {
                assert!(t.offset % f.alignment() == 0);
                assert!(t.offset >= f.data_offset() && t.offset + t.n_bytes <= len);
                assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                assert_eq!(f.tensor(&t.name), Some(t));
            }
            let md = f.metadata();
            for (k, v) in md.iter() {
                let _ = (md.get_u32(k), md.get_i32(k), md.get_f32(k), md.get_str(k));
                let _ = (md.get_str_array(k), md.get_f32_array(k), v.to_string());
            }
            let _ = md.arch();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        }
    }
});
