//! Every input the fuzzer (fuzz/fuzz_targets/gguf_parse.rs) ever failed on, kept in
//! fuzz/regressions/, and its seeds, replayed under the fuzz target's own checks.

use infer::gguf::{GgufFile, GgufWriter};
use std::path::Path;

#[test]
fn fuzz_regressions_parse_or_fail_in_one_line() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    let entries = std::fs::read_dir(fuzz.join("regressions"))
        .unwrap()
        .chain(std::fs::read_dir(fuzz.join("seeds")).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        match GgufFile::from_bytes(bytes.clone()) {
            Ok(f) => {
                for t in f.tensors() {
                    assert_eq!(t.offset % f.alignment(), 0, "{}", path.display());
                    assert!(t.offset + t.n_bytes <= bytes.len() as u64);
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                }
                let b1 = rewrite(&f).to_bytes();
                let f2 = GgufFile::from_bytes(b1.clone()).unwrap();
                assert_eq!(rewrite(&f2).to_bytes(), b1, "{}", path.display());
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{}: {msg:?}", path.display());
            }
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} inputs under {}", fuzz.display());
}

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
