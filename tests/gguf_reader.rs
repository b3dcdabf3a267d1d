//! The GGUF reader against ggml's own `gguf_init_from_*`: the real model and a writer-made file
//! holding every value type read identically by both (which proves the writer too); the model's
//! known contents; the type table against ggml's; peak memory of `infer info` on the real model.

mod common;

use common::model_path;
use ggml_ref::gguf::{RefGguf, RefValue};
use infer::gguf::{Array, GgufFile, GgufWriter, Value};
use infer::quant::GgmlType;
use std::collections::BTreeMap;

/// What ggml's C API returns for a string: the bytes up to the first NUL.
fn c_str(s: &str) -> &str {
    s.split('\0').next().unwrap_or("")
}

fn same_value(ours: &Value, theirs: &RefValue) -> bool {
    use RefValue as R;
    fn all<T>(a: &[T], b: &[RefValue], f: impl Fn(&T, &RefValue) -> bool) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| f(x, y))
    }
    match (ours, theirs) {
        (Value::U8(a), R::U8(b)) => a == b,
        (Value::I8(a), R::I8(b)) => a == b,
        (Value::U16(a), R::U16(b)) => a == b,
        (Value::I16(a), R::I16(b)) => a == b,
        (Value::U32(a), R::U32(b)) => a == b,
        (Value::I32(a), R::I32(b)) => a == b,
        (Value::F32(a), R::F32(b)) => a.to_bits() == b.to_bits(),
        (Value::Bool(a), R::Bool(b)) => a == b,
        (Value::String(a), R::Str(b)) => c_str(a) == b,
        (Value::U64(a), R::U64(b)) => a == b,
        (Value::I64(a), R::I64(b)) => a == b,
        (Value::F64(a), R::F64(b)) => a.to_bits() == b.to_bits(),
        (Value::Array(a), R::Array(b)) => match a {
            Array::U8(v) => all(v, b, |x, y| same_value(&Value::U8(*x), y)),
            Array::I8(v) => all(v, b, |x, y| same_value(&Value::I8(*x), y)),
            Array::U16(v) => all(v, b, |x, y| same_value(&Value::U16(*x), y)),
            Array::I16(v) => all(v, b, |x, y| same_value(&Value::I16(*x), y)),
            Array::U32(v) => all(v, b, |x, y| same_value(&Value::U32(*x), y)),
            Array::I32(v) => all(v, b, |x, y| same_value(&Value::I32(*x), y)),
            Array::F32(v) => all(v, b, |x, y| same_value(&Value::F32(*x), y)),
            Array::Bool(v) => all(v, b, |x, y| same_value(&Value::Bool(*x), y)),
            Array::String(v) => all(v, b, |x, y| matches!(y, R::Str(s) if s == c_str(x))),
            Array::U64(v) => all(v, b, |x, y| same_value(&Value::U64(*x), y)),
            Array::I64(v) => all(v, b, |x, y| same_value(&Value::I64(*x), y)),
            Array::F64(v) => all(v, b, |x, y| same_value(&Value::F64(*x), y)),
        },
        _ => false,
    }
}

/// Everything ggml reads from a file must match what we read from it.
fn assert_matches_ggml(ours: &GgufFile, theirs: &RefGguf) {
    assert_eq!(ours.version(), theirs.version, "version");
    assert_eq!(ours.alignment(), theirs.alignment, "alignment");
    assert_eq!(ours.data_offset(), theirs.data_offset, "data offset");

    let md = ours.metadata();
    assert_eq!(md.len(), theirs.kvs.len(), "metadata count");
    for ((key, value), kv) in md.iter().zip(&theirs.kvs) {
        assert_eq!(c_str(key), kv.key, "key order");
        assert_eq!(value.ty().id(), kv.type_id, "type of {key}");
        if let Value::Array(a) = value {
            assert_eq!(
                Some(a.elem_type().id()),
                kv.arr_type_id,
                "element type of {key}"
            );
        }
        assert!(
            same_value(value, &kv.value),
            "value of {key}: ours {value}, ggml {:?}",
            kv.value
        );
    }

    assert_eq!(ours.tensors().len(), theirs.tensors.len(), "tensor count");
    for (t, r) in ours.tensors().iter().zip(&theirs.tensors) {
        assert_eq!(c_str(&t.name), r.name, "tensor order");
        assert_eq!(t.ty.id(), r.type_id, "type of {}", t.name);
        let mut ne = [1i64; 4];
        for (n, d) in ne.iter_mut().zip(&t.dims) {
            *n = *d as i64;
        }
        assert_eq!(ne, r.ne, "shape of {}", t.name);
        assert_eq!(
            t.offset - ours.data_offset(),
            r.offset,
            "offset of {}",
            t.name
        );
        assert_eq!(t.n_bytes, r.size, "size of {}", t.name);
        assert_eq!(ours.tensor(&t.name), Some(t), "lookup of {}", t.name);
    }
}

#[test]
fn real_model_reads_as_ggml_reads_it() {
    let Some(path) = model_path() else { return };
    let ours = GgufFile::open(&path).unwrap();
    let theirs = RefGguf::from_file(&path).expect("ggml reads the model");
    assert_matches_ggml(&ours, &theirs);
}

#[test]
fn real_model_contents() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    let md = f.metadata();
    assert_eq!(md.arch().unwrap(), "gemma3");
    assert_eq!(md.get_u32("gemma3.block_count").unwrap(), Some(18));
    assert_eq!(md.get_u32("gemma3.embedding_length").unwrap(), Some(640));
    assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    let tokens = md.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len(), 262144);
    assert_eq!(
        md.get_f32_array("tokenizer.ggml.scores")
            .unwrap()
            .unwrap()
            .len(),
        262144
    );
    assert_eq!(
        md.get_i32_array("tokenizer.ggml.token_type")
            .unwrap()
            .unwrap()
            .len(),
        262144
    );
    let bos = md.get_u32("tokenizer.ggml.bos_token_id").unwrap().unwrap();
    assert_eq!(tokens[bos as usize], "<bos>");

    assert_eq!(f.tensors().len(), 236);
    let mut by_type = BTreeMap::new();
    for t in f.tensors() {
        *by_type.entry(t.ty).or_insert(0) += 1;
    }
    let expect = [
        (GgmlType::F32, 109),
        (GgmlType::Q5_0, 81),
        (GgmlType::Q8_0, 10),
        (GgmlType::Q4_K, 27),
        (GgmlType::Q6_K, 9),
    ];
    assert_eq!(by_type, expect.into_iter().collect());

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims, [640, 262144]);
    assert_eq!(f.tensor_data(emb).len() as u64, emb.n_bytes);

    // tensor_data must be the bytes at the absolute offset, read independently of the mmap.
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(&path).unwrap();
    for name in [
        "output_norm.weight",
        "blk.0.attn_q.weight",
        "blk.17.ffn_down.weight",
    ] {
        let t = f.tensor(name).unwrap();
        let mut buf = vec![0u8; t.n_bytes as usize];
        file.seek(SeekFrom::Start(t.offset)).unwrap();
        file.read_exact(&mut buf).unwrap();
        assert!(f.tensor_data(t) == buf, "{name} bytes");
    }
}

/// A file with every value type, arrays of every element type, and tensors of several types
/// under a non-default alignment; also returns each tensor's bytes.
fn every_type_file() -> (Vec<u8>, Vec<Vec<u8>>) {
    let tensors: Vec<(&str, GgmlType, Vec<u64>)> = vec![
        ("f32", GgmlType::F32, vec![3, 5]),
        ("f16", GgmlType::F16, vec![7]),
        ("bf16", GgmlType::BF16, vec![2, 2, 2]),
        ("q4_0", GgmlType::Q4_0, vec![64, 3]),
        ("q8_0", GgmlType::Q8_0, vec![32, 1, 2, 3]),
        ("q4_k", GgmlType::Q4_K, vec![256, 2]),
        ("q6_k", GgmlType::Q6_K, vec![512]),
        ("i32", GgmlType::I32, vec![9]),
    ];
    let mut w = GgufWriter::new()
        .meta("general.architecture", "test")
        .alignment(64)
        .meta("t.u8", 200u8)
        .meta("t.i8", -100i8)
        .meta("t.u16", 60000u16)
        .meta("t.i16", -30000i16)
        .meta("t.u32", 4_000_000_000u32)
        .meta("t.i32", -2_000_000_000i32)
        .meta("t.f32", -1.5e-7f32)
        .meta("t.bool", true)
        .meta("t.str", "héllo wörld ✓")
        .meta("t.empty_str", "")
        .meta("t.u64", u64::MAX - 1)
        .meta("t.i64", i64::MIN + 1)
        .meta("t.f64", std::f64::consts::PI)
        .meta("t.arr_u8", vec![0u8, 1, 255])
        .meta("t.arr_i8", vec![-128i8, 127])
        .meta("t.arr_u16", vec![1u16, 65535])
        .meta("t.arr_i16", vec![-1i16, 1])
        .meta("t.arr_u32", vec![7u32; 5])
        .meta("t.arr_i32", vec![-7i32, 0, 7])
        .meta("t.arr_f32", vec![0.25f32, -0.0, f32::INFINITY])
        .meta("t.arr_bool", vec![true, false, true])
        .meta("t.arr_str", vec!["a", "", "ünï", "<0x0A>"])
        .meta("t.arr_u64", vec![u64::MAX])
        .meta("t.arr_i64", vec![i64::MIN, -1])
        .meta("t.arr_f64", vec![1e300f64, -2.5])
        .meta("t.arr_empty", Vec::<u32>::new());
    let mut payloads = Vec::new();
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        let n: u64 = dims.iter().product();
        let bytes = ty.row_bytes(n).unwrap() as usize;
        let data: Vec<u8> = (0..bytes).map(|j| (j * 31 + i * 7) as u8).collect();
        w = w.tensor(name, *ty, dims, data.clone());
        payloads.push(data);
    }
    (w.to_bytes(), payloads)
}

/// ggml must read back exactly what the writer wrote, and so must we.
#[test]
fn writer_file_with_every_type_reads_as_ggml_reads_it() {
    let (bytes, payloads) = every_type_file();
    let theirs = RefGguf::from_bytes(&bytes).expect("ggml reads the writer's file");
    let ours = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(ours.alignment(), 64);
    assert_eq!(ours.metadata().len(), 28);
    assert_matches_ggml(&ours, &theirs);
    for (t, data) in ours.tensors().iter().zip(&payloads) {
        assert_eq!(t.offset % 64, 0, "{} aligned", t.name);
        assert_eq!(ours.tensor_data(t), &data[..], "{} bytes", t.name);
    }
}

#[test]
fn version_2_is_read_like_version_3() {
    let bytes = GgufWriter::new()
        .version(2)
        .meta("general.architecture", "test")
        .tensor_f32("x", &[2], &[1.0, 2.0])
        .to_bytes();
    let theirs = RefGguf::from_bytes(&bytes).expect("ggml reads v2");
    let ours = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(ours.version(), 2);
    assert_matches_ggml(&ours, &theirs);
}

/// The type table's block and type sizes are ggml's.
#[test]
fn type_table_matches_ggml() {
    for t in GgmlType::all() {
        // SAFETY: every id in our table is a defined ggml_type of this ggml version.
        let (blck, size) = unsafe {
            (
                ggml_ref::sys::ggml_blck_size(t.id()),
                ggml_ref::sys::ggml_type_size(t.id()),
            )
        };
        assert_eq!(t.block_size() as i64, blck, "{t} block size");
        assert_eq!(t.type_size(), size, "{t} type size");
    }
}

/// `infer info` must not fault in the weights: its peak RSS stays far below the file size.
#[test]
fn info_peak_rss_is_far_below_file_size() {
    let Some(path) = model_path() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["info", "--verbose"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kb: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak RSS:"))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS line in:\n{stdout}"));
    let file_len = std::fs::metadata(&path).unwrap().len();
    eprintln!("infer info peak RSS {kb} kB for a {file_len}-byte model");
    assert!(
        kb * 1024 < file_len / 4,
        "peak RSS {kb} kB vs file {file_len} bytes"
    );
}

#[test]
fn info_prints_the_model_summary() {
    let Some(path) = model_path() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["info", "--tensors"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    for want in [
        "architecture:  gemma3",
        "file type:     Q4_K_M (15)",
        "block_count",
        "tensors:       236",
        "vocabulary                             262144",
        "token_embd.weight",
        "[640, 262144]",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    for (ty, n) in [
        ("F32", "109"),
        ("Q5_0", "81"),
        ("Q4_K", "27"),
        ("Q8_0", "10"),
        ("Q6_K", "9"),
    ] {
        let found = s.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 3 && w[0] == ty && w[1] == n && w[2] == "tensors"
        });
        assert!(found, "no '{ty} {n} tensors' line in:\n{s}");
    }
    // --tensors lists each tensor once: 18 blocks of 13 tensors, plus token_embd and output_norm.
    assert_eq!(s.lines().filter(|l| l.contains("blk.")).count(), 18 * 13);
}

/// Deterministic xorshift64* for the mutants below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that hit the parser's edges when written over a count, length, type id or offset.
const EDGES: [u64; 22] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    12,
    13,
    31,
    32,
    33,
    64,
    255,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 62,
    1 << 63,
    u64::MAX,
];

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] = rng.next() as u8,
            1 => b[at] ^= 1 << rng.below(8),
            2 => {
                let v = EDGES[rng.below(EDGES.len())].to_le_bytes();
                let w = [1, 4, 8][rng.below(3)].min(b.len() - at);
                b[at..at + w].copy_from_slice(&v[..w]);
            }
            3 => b.truncate(at),
            4 => {
                let n = rng.below(16).min(b.len() - at);
                b.drain(at..at + n);
            }
            _ => {
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, fill);
            }
        }
    }
    b
}

/// Whether ggml's layout rule holds: each tensor's relative offset is the sum of the padded
/// sizes of the tensors before it (ggml demands this; we accept any aligned, disjoint layout).
fn ggml_sequential(f: &GgufFile) -> bool {
    let mut expect = 0;
    for t in f.tensors() {
        if t.offset - f.data_offset() != expect {
            return false;
        }
        expect += t.n_bytes.div_ceil(f.alignment()) * f.alignment();
    }
    true
}

/// Differential test: 100,000 damaged variants of writer-made files through both readers. Where
/// both accept a file they must read the same values; where only one does, the difference must be
/// one of the documented ones.
#[test]
fn mutated_files_read_as_ggml_reads_them() {
    use infer::gguf::GgufErrorKind as K;
    ggml_ref::gguf::quiet_logs();
    let bases = [
        every_type_file().0,
        GgufWriter::new()
            .version(2)
            .meta("general.architecture", "llama")
            .meta("tokenizer.ggml.tokens", vec!["a", "b", "c"])
            .tensor("q", GgmlType::Q5_0, &[32, 2], vec![3u8; 44])
            .tensor_f32("n", &[3], &[1.0, 2.0, 3.0])
            .to_bytes(),
        GgufWriter::new().meta("k", "v").to_bytes(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut both_ok, mut both_err, mut differ) = (0, 0, 0);
    for i in 0..100_000 {
        let bytes = mutate(&bases[i % bases.len()], &mut rng);
        let theirs = RefGguf::from_bytes(&bytes);
        match (GgufFile::from_bytes(bytes.clone()), theirs) {
            (Ok(ours), Some(theirs)) => {
                both_ok += 1;
                assert_matches_ggml(&ours, &theirs);
            }
            (Err(_), None) => both_err += 1,
            (Err(e), Some(_)) => {
                differ += 1;
                // Stricter on purpose: empty tensors, data past the end (ggml's metadata-only
                // read never looks), non-UTF-8 names, and rank 0.
                let documented = matches!(
                    e.kind(),
                    K::ZeroDim { .. }
                        | K::TensorPastEnd { .. }
                        | K::BadUtf8 { .. }
                        | K::BadDimCount { n_dims: 0, .. }
                );
                assert!(documented, "mutant {i}: only we refuse it: {e}");
            }
            (Ok(ours), None) => {
                differ += 1;
                assert!(!ggml_sequential(&ours), "mutant {i}: only ggml refuses it");
            }
        }
    }
    eprintln!("mutants: {both_ok} read by both, {both_err} refused by both, {differ} differ");
    assert!(
        both_ok > 1000 && both_err > 1000,
        "mutants too mild or too wild"
    );
}
