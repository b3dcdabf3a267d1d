//! Fuzz the GGUF header parser: any input must give either a header whose every tensor lies
//! aligned inside the input and whose getters do not panic, or a one-line error. A file that
//! parses must also survive a round trip through the writer: rewriting what was read gives a file
//! that parses, and rewriting that gives the same bytes.

#![no_main]

use infer::gguf::{GgufFile, GgufWriter};
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

            let b1 = rewrite(&f).to_bytes();
            let f2 = GgufFile::from_bytes(b1.clone()).expect("the writer's copy parses");
            assert_eq!(rewrite(&f2).to_bytes(), b1);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        }
    }
});

fn rewrite(f: &GgufFile) -> GgufWriter {
    let mut w = GgufWriter::new().version(f.version());
    for (k, v) in f.metadata().iter() {
        w = w.meta(k, v.clone());
    }
    for t in f.tensors() {
        w = w.tensor(&t.name, t.ty, &t.dims, f.tensor_data(t));
    }
    w
}
