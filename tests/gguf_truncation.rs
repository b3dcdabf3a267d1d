//! The real model cut short anywhere must give a clean error. Parsing a prefix that reaches the
//! 262,144-entry vocabulary costs ~30 ms, so the sweep is exhaustive where it is cheap and on a
//! copy of the header whose three vocabulary arrays are shrunk to four entries (everything else,
//! including the full tensor table, byte for byte the model's), and sampled elsewhere.

use infer::gguf::{GgufFile, GgufWriter};
use std::path::Path;

fn model() -> Option<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    if !p.exists() {
        eprintln!(
            "skipping: {} is absent (scripts/fetch-model.sh fetches it)",
            p.display()
        );
        return None;
    }
    Some(std::fs::read(p).unwrap())
}

/// Offset of the length-prefixed GGUF string `s` (its first occurrence).
fn str_at(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{s:?} not found"))
}

/// Parse `bytes[..n]`; it must fail with a one-line message.
fn must_fail(bytes: &[u8], n: usize) -> String {
    match GgufFile::parse(&bytes[..n]) {
        Ok(_) => panic!("prefix of {n} bytes parsed"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "prefix {n}: {msg}");
            msg
        }
    }
}

/// A small deterministic sequence of cut points in `lo..hi`.
fn sample(lo: usize, hi: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (x % (hi - lo) as u64) as usize
        })
        .collect()
}

#[test]
fn real_model_cut_anywhere_fails_cleanly() {
    let Some(bytes) = model() else { return };
    let f = GgufFile::parse(&bytes).unwrap();
    let data_offset = f.data_offset() as usize;
    let tokens_kv = str_at(&bytes, "tokenizer.ggml.tokens");
    let tail_kv = str_at(&bytes, "tokenizer.ggml.bos_token_id");

    let mut cuts: Vec<usize> = (0..tokens_kv + 4096).collect();
    cuts.extend(sample(tokens_kv, tail_kv, 40, 1));
    cuts.extend(tail_kv - 8..tail_kv + 40);
    cuts.extend(sample(tail_kv, data_offset, 40, 2));
    cuts.extend(data_offset - 24..data_offset + 8);
    for n in cuts {
        let msg = must_fail(&bytes, n);
        if n < data_offset {
            assert!(
                [
                    "truncated",
                    "runs past the end",
                    "more than the file can hold"
                ]
                .iter()
                .any(|w| msg.contains(w)),
                "prefix {n}: {msg}"
            );
        }
    }

    // In the data section every cut leaves some tensor past the end, and names it.
    let last_end = f
        .tensors()
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    for n in sample(data_offset + 8, last_end, 40, 3) {
        let msg = must_fail(&bytes, n);
        assert!(
            msg.contains("runs past the end of the file"),
            "prefix {n}: {msg}"
        );
    }
    assert!(GgufFile::parse(&bytes[..last_end]).is_ok());
}

#[test]
fn real_model_header_with_small_vocab_cut_at_every_byte() {
    let Some(bytes) = model() else { return };
    let real = GgufFile::parse(&bytes).unwrap();
    let tokens_kv = str_at(&bytes, "tokenizer.ggml.tokens");
    let tail_kv = str_at(&bytes, "tokenizer.ggml.bos_token_id");
    let table_end = {
        // Where the padding before the data section starts, from the entries' encoded sizes.
        let entries: usize = real
            .tensors()
            .iter()
            .map(|t| 8 + t.name.len() + 4 + 8 * t.dims.len() + 4 + 8)
            .sum();
        str_at(&bytes, &real.tensors()[0].name) + entries
    };
    let vocab = GgufWriter::new()
        .meta(
            "tokenizer.ggml.tokens",
            vec!["<pad>", "<eos>", "<bos>", "<unk>"],
        )
        .meta("tokenizer.ggml.scores", vec![0.0f32; 4])
        .meta("tokenizer.ggml.token_type", vec![3i32; 4])
        .to_bytes();

    let mut header = bytes[..tokens_kv].to_vec();
    header.extend_from_slice(&vocab[24..]);
    header.extend_from_slice(&bytes[tail_kv..table_end]);
    let data_offset = header.len().div_ceil(32) * 32;
    header.resize(data_offset, 0);

    // The copy reads as the model's metadata and tensor table: its whole header fails only on
    // the first tensor's missing data.
    let msg = must_fail(&header, header.len());
    assert!(
        msg.contains(&format!("tensor '{}'", real.tensors()[0].name))
            && msg.contains("past the end"),
        "{msg}"
    );
    for n in 0..header.len() {
        let msg = must_fail(&header, n);
        assert!(
            [
                "truncated",
                "runs past the end",
                "more than the file can hold"
            ]
            .iter()
            .any(|w| msg.contains(w)),
            "prefix {n}: {msg}"
        );
    }
}
