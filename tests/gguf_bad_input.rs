//! Hostile and broken GGUF files, one per class of damage: each must give a one-line error that
//! names the problem, never a panic or a huge allocation. Where ggml's own reader also refuses
//! the file, the test checks that too, so our rules are ggml's rules (the deliberate differences
//! are marked). A few files also go through the real `infer info` binary.

use ggml_ref::gguf::RefGguf;
use infer::gguf::{GgufFile, GgufWriter, Value};
use infer::quant::GgmlType;
use std::path::PathBuf;

/// A small valid file: three metadata entries (one an array) and two tensors.
fn base() -> GgufWriter {
    GgufWriter::new()
        .meta("general.architecture", "llama")
        .meta("general.name", "tiny")
        .meta("t.list", vec![1u32, 2, 3])
        .tensor_f32("a.weight", &[4, 2], &[0.5; 8])
        .tensor("b.weight", GgmlType::Q8_0, &[32], vec![7u8; 34])
}

/// Offset just past the length-prefixed string `s` (its first occurrence as a GGUF string).
fn after_str(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("string {s:?} not in file"));
    at + needle.len()
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Where the data offset of a one-dimensional tensor's table entry lies.
fn offset_field_1d(bytes: &[u8], name: &str) -> usize {
    after_str(bytes, name) + 4 + 8 + 4
}

#[derive(PartialEq)]
enum Ggml {
    /// ggml's reader refuses this file too.
    Rejects,
    /// ggml reads it; we are stricter on purpose (see the test).
    Accepts,
}

/// Parse must fail with a single-line message containing every `needle`.
fn check(bytes: &[u8], needles: &[&str], ggml: Ggml) -> String {
    let err = match GgufFile::parse(bytes) {
        Ok(_) => panic!("parsed a bad file; expected an error with {needles:?}"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "multi-line error: {err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
    let ggml_ok = RefGguf::from_bytes(bytes).is_some();
    assert_eq!(
        ggml_ok,
        ggml == Ggml::Accepts,
        "ggml's verdict differs for: {err}"
    );
    err
}

#[test]
fn base_file_is_valid_for_us_and_ggml() {
    let bytes = base().to_bytes();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(f.tensors().len(), 2);
    assert!(RefGguf::from_bytes(&bytes).is_some());
}

#[test]
fn wrong_magic() {
    let mut b = base().to_bytes();
    b[..4].copy_from_slice(b"GGML");
    check(&b, &["not a GGUF file", "magic"], Ggml::Rejects);
}

#[test]
fn unsupported_versions() {
    let mut b = base().to_bytes();
    put_u32(&mut b, 4, 1);
    check(&b, &["GGUF version 1 is not supported"], Ggml::Rejects);
    put_u32(&mut b, 4, 4);
    check(&b, &["GGUF version 4 is not supported"], Ggml::Rejects);
    put_u32(&mut b, 4, 0);
    check(&b, &["GGUF version 0 is not supported"], Ggml::Rejects);
    put_u32(&mut b, 4, 3u32.swap_bytes());
    check(&b, &["little-endian"], Ggml::Rejects);
}

#[test]
fn counts_larger_than_the_file() {
    let mut b = base().to_bytes();
    put_u64(&mut b, 8, 1 << 40);
    check(
        &b,
        &["tensor count 1099511627776", "more than the file can hold"],
        Ggml::Rejects,
    );
    put_u64(&mut b, 8, u64::MAX);
    check(&b, &["tensor count"], Ggml::Rejects);
    let mut b = base().to_bytes();
    put_u64(&mut b, 16, u64::MAX / 2);
    check(
        &b,
        &["metadata count", "more than the file can hold"],
        Ggml::Rejects,
    );
}

#[test]
fn string_lengths_past_the_end() {
    let mut b = base().to_bytes();
    put_u64(&mut b, 24, u64::MAX);
    check(
        &b,
        &["key of metadata entry #0", "runs past the end"],
        Ggml::Rejects,
    );
    let mut b = base().to_bytes();
    let at = after_str(&b, "general.name") + 4;
    put_u64(&mut b, at, 1 << 40);
    check(
        &b,
        &["metadata key 'general.name'", "runs past the end"],
        Ggml::Rejects,
    );
    let mut b = base().to_bytes();
    let at = after_str(&b, "general.architecture");
    put_u64(&mut b, at + 4 + 8 + 5, 1 << 62); // the length of the next key
    check(
        &b,
        &["key of metadata entry #1", "length 4611686018427387904"],
        Ggml::Rejects,
    );
}

#[test]
fn array_lengths_absurd() {
    let mut b = base().to_bytes();
    let count_at = after_str(&b, "t.list") + 4 + 4;
    put_u64(&mut b, count_at, 1 << 61);
    check(
        &b,
        &["array of u32 in metadata key 't.list'", "runs past the end"],
        Ggml::Rejects,
    );
    // n * 4 overflows u64: must be caught before multiplying into a small number.
    put_u64(&mut b, count_at, (1 << 62) + 1);
    check(&b, &["array of u32", "runs past the end"], Ggml::Rejects);
    let mut b = GgufWriter::new().meta("t.strs", vec!["x", "y"]).to_bytes();
    let count_at = after_str(&b, "t.strs") + 4 + 4;
    put_u64(&mut b, count_at, 1 << 40);
    check(
        &b,
        &["array of str in metadata key 't.strs'"],
        Ggml::Rejects,
    );
}

#[test]
fn nested_arrays_rejected() {
    let mut b = base().to_bytes();
    let elem_at = after_str(&b, "t.list") + 4;
    put_u32(&mut b, elem_at, 9);
    check(
        &b,
        &["'t.list'", "nested arrays are not supported"],
        Ggml::Rejects,
    );
}

#[test]
fn unknown_value_types() {
    let mut b = base().to_bytes();
    let at = after_str(&b, "general.name");
    put_u32(&mut b, at, 13);
    check(
        &b,
        &["'general.name'", "unknown value type 13"],
        Ggml::Rejects,
    );
    let mut b = base().to_bytes();
    let at = after_str(&b, "t.list") + 4;
    put_u32(&mut b, at, 0xffff_ffff);
    check(
        &b,
        &["'t.list'", "unknown value type 4294967295"],
        Ggml::Rejects,
    );
}

#[test]
fn tensor_rank_out_of_range() {
    let mut b = base().to_bytes();
    let at = after_str(&b, "b.weight");
    put_u32(&mut b, at, 5);
    check(
        &b,
        &["'b.weight'", "5 dimensions, must be 1 to 4"],
        Ggml::Rejects,
    );
    // ggml takes rank 0 as a scalar; no model has one, and here it misreads the rest of the
    // entry, so both refuse the file (ggml for the misread fields).
    put_u32(&mut b, at, 0);
    check(&b, &["'b.weight'", "0 dimensions"], Ggml::Rejects);
}

#[test]
fn zero_dimension() {
    // ggml allows empty tensors; a model weight never is one, so we refuse it as damage.
    let b = base()
        .tensor("z.weight", GgmlType::F32, &[4, 0], Vec::new())
        .to_bytes();
    check(
        &b,
        &["'z.weight'", "zero-length dimension", "[4, 0]"],
        Ggml::Accepts,
    );
}

#[test]
fn element_and_byte_counts_overflow() {
    let b = base()
        .tensor("big", GgmlType::F32, &[1 << 32, 1 << 32], Vec::new())
        .to_bytes();
    check(&b, &["'big'", "overflows", "element count"], Ggml::Rejects);
    // 2^62 elements fit in int64, their 2^64 bytes do not.
    let b = base()
        .tensor("big", GgmlType::F32, &[1 << 62], Vec::new())
        .to_bytes();
    check(&b, &["'big'", "overflows", "byte size"], Ggml::Rejects);
    let b = base()
        .tensor("big", GgmlType::F32, &[u64::MAX], Vec::new())
        .to_bytes();
    check(&b, &["'big'", "overflows"], Ggml::Rejects);
}

#[test]
fn row_not_a_multiple_of_the_block_size() {
    let b = base()
        .tensor("q.weight", GgmlType::Q4_K, &[255, 2], vec![0u8; 288])
        .to_bytes();
    check(
        &b,
        &["'q.weight'", "Q4_K", "row length 255", "block size 256"],
        Ggml::Rejects,
    );
}

#[test]
fn bad_alignment() {
    let b = base().alignment(0).to_bytes();
    check(
        &b,
        &["general.alignment", "power of two", "found 0"],
        Ggml::Rejects,
    );
    let b = base().alignment(48).to_bytes();
    check(&b, &["general.alignment", "found 48"], Ggml::Rejects);
    let b = base().meta("general.alignment", 32u64).to_bytes();
    check(&b, &["general.alignment", "(u64)"], Ggml::Rejects);
}

#[test]
fn tensor_offsets_misaligned_overlapping_or_past_the_end() {
    let good = base().to_bytes();
    let at = offset_field_1d(&good, "b.weight");

    let mut b = good.clone();
    put_u64(&mut b, at, 4);
    check(
        &b,
        &[
            "'b.weight'",
            "offset 4",
            "not a multiple of the alignment 32",
        ],
        Ggml::Rejects,
    );

    let mut b = good.clone();
    put_u64(&mut b, at, 0);
    check(
        &b,
        &["'b.weight'", "overlaps tensor 'a.weight'"],
        Ggml::Rejects,
    );

    let mut b = good.clone();
    put_u64(&mut b, at, 1 << 20);
    check(
        &b,
        &["'b.weight'", "runs past the end of the file"],
        Ggml::Rejects,
    );

    // An offset whose end overflows u64.
    let mut b = good.clone();
    put_u64(&mut b, at, u64::MAX / 32 * 32);
    check(
        &b,
        &["'b.weight'", "runs past the end of the file"],
        Ggml::Rejects,
    );

    // The last tensor's data cut short. ggml's metadata-only read does not look at the data
    // section (llama.cpp's loader checks it later); we check it at open.
    let cut = good.len() - 32;
    check(
        &good[..cut],
        &["'b.weight'", "runs past the end"],
        Ggml::Accepts,
    );
}

#[test]
fn duplicate_tensor_names() {
    let b = base().tensor_f32("a.weight", &[1], &[1.0]).to_bytes();
    check(&b, &["duplicate tensor name 'a.weight'"], Ggml::Rejects);
}

#[test]
fn duplicate_and_empty_metadata_keys() {
    let b = base().meta("general.name", "again").to_bytes();
    check(
        &b,
        &["duplicate metadata key 'general.name'"],
        Ggml::Rejects,
    );
    let b = base().meta("", 1u8).to_bytes();
    check(&b, &["metadata key #3", "is empty"], Ggml::Rejects);
}

#[test]
fn unknown_tensor_type_names_tensor_and_id() {
    // 4 was Q4_2, removed from ggml; 1000 was never defined.
    for id in [4u32, 1000] {
        let b = base()
            .tensor_with_type_id("c.weight", id, &[32], vec![0u8; 32])
            .to_bytes();
        check(
            &b,
            &["'c.weight'", &format!("unknown ggml type id {id}")],
            Ggml::Rejects,
        );
    }
}

#[test]
fn tensor_name_too_long_for_ggml() {
    let name = "x".repeat(64);
    let b = base().tensor_f32(&name, &[1], &[1.0]).to_bytes();
    check(
        &b,
        &["tensor #2", "name is 64 bytes", "at most 63"],
        Ggml::Rejects,
    );
}

#[test]
fn invalid_utf8() {
    // Keys and tensor names must be UTF-8 (we look them up by &str); ggml does not check, so it
    // reads these files.
    let mut b = base().to_bytes();
    let at = after_str(&b, "general.name") - 1;
    b[at] = 0xff;
    check(
        &b,
        &["key of metadata entry #1", "not valid UTF-8"],
        Ggml::Accepts,
    );
    let mut b = base().to_bytes();
    let at = after_str(&b, "a.weight") - 1;
    b[at] = 0xc3;
    check(&b, &["name of tensor #0", "not valid UTF-8"], Ggml::Accepts);
    // String values are decoded lossily, as a vocabulary may hold invalid byte sequences.
    let mut b = base().to_bytes();
    let at = after_str(&b, "tiny") - 1;
    b[at] = 0xfe;
    let f = GgufFile::from_bytes(b).unwrap();
    assert_eq!(
        f.metadata().get("general.name"),
        Some(&Value::from("tin\u{fffd}"))
    );
}

/// Every prefix of a file that stops before its last tensor's data ends must fail cleanly.
#[test]
fn truncated_at_every_byte() {
    let full = base().to_bytes();
    let f = GgufFile::from_bytes(full.clone()).unwrap();
    let data_end = f
        .tensors()
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    let header_end = f.data_offset() as usize;
    for n in 0..data_end {
        let err = match GgufFile::parse(&full[..n]) {
            Ok(_) => panic!("prefix of {n} bytes parsed"),
            Err(e) => e.to_string(),
        };
        assert!(!err.contains('\n'), "{err}");
        let expect: &[&str] = if n < header_end {
            &[
                "truncated",
                "runs past the end",
                "more than the file can hold",
            ]
        } else {
            &["runs past the end of the file"]
        };
        assert!(expect.iter().any(|e| err.contains(e)), "prefix {n}: {err}");
    }
    // Dropping only the padding after the last tensor leaves a valid file.
    assert!(GgufFile::parse(&full[..data_end]).is_ok());
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gguf_bad_input");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `infer info` on a broken file: exit status 1, nothing on stdout, one `error:` line on stderr
/// naming the file and the problem.
fn run_info(path: &PathBuf, needle: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("info")
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&*path.to_string_lossy()),
        "file not named: {stderr}"
    );
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

#[test]
fn infer_info_reports_bad_files_in_one_line() {
    let mut b = base().to_bytes();
    b[..4].copy_from_slice(b"\x7fELF");
    let p = tmp("magic.gguf");
    std::fs::write(&p, &b).unwrap();
    run_info(&p, "not a GGUF file");

    let p = tmp("truncated.gguf");
    std::fs::write(&p, &base().to_bytes()[..60]).unwrap();
    run_info(&p, "truncated");

    let p = tmp("empty.gguf");
    std::fs::write(&p, b"").unwrap();
    run_info(&p, "truncated in magic");

    let p = tmp("type.gguf");
    base()
        .tensor_with_type_id("c.weight", 99, &[8], vec![0u8; 8])
        .write_to(&p)
        .unwrap();
    run_info(&p, "tensor 'c.weight' has unknown ggml type id 99");

    let p = tmp("a_directory.gguf");
    std::fs::create_dir_all(&p).unwrap();
    run_info(&p, "is a directory");

    let p = tmp("no_such_file.gguf");
    let _ = std::fs::remove_file(&p);
    run_info(&p, "cannot read file");

    // A valid file without general.architecture is not a model.
    let p = tmp("no_arch.gguf");
    GgufWriter::new()
        .tensor_f32("x", &[1], &[0.0])
        .write_to(&p)
        .unwrap();
    run_info(&p, "metadata key 'general.architecture' is missing");
}
