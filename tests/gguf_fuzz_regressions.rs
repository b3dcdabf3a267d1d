//! Every input the fuzzer (fuzz/fuzz_targets/gguf_parse.rs) ever failed on, kept in
//! fuzz/regressions/ and replayed under the fuzz target's own checks.

use infer::gguf::GgufFile;
use std::path::Path;

#[test]
fn fuzz_regressions_parse_or_fail_in_one_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        match GgufFile::from_bytes(bytes.clone()) {
            Ok(f) => {
                for t in f.tensors() {
                    assert_eq!(t.offset % f.alignment(), 0, "{}", path.display());
                    assert!(t.offset + t.n_bytes <= bytes.len() as u64);
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{}: {msg:?}", path.display());
            }
        }
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
