//! The multi-sequence forward pass (`Model::forward_segments`) against each sequence's own
//! forward pass, bit for bit: several sequences at different positions (one past the
//! 512-token sliding window, so its ring has wrapped and its attention splits over threads)
//! decode together, and every sequence's logits equal those of `Model::forward` of the same
//! token on a state that saw the same history alone, with flash attention on and off. A
//! segment of several tokens equals a lone forward with `set_rows_as_decode`, as speculative
//! verification uses it. This is what makes `infer batch --parallel N` independent of N.

mod common;

use common::model_path;
use infer::gguf::GgufFile;
use infer::model::{Batch, Model, ModelError, ModelOptions, Segment, State};
use infer::tokenizer::Tokenizer;

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// Prompts of different lengths: short ones, and one of more than 512 tokens.
fn prompts(tok: &Tokenizer) -> Vec<Vec<u32>> {
    let long = "The history of the river is long and winding. ".repeat(54);
    let texts = [
        "The capital of France is",
        "Once upon a time, in a land far away, there lived",
        long.as_str(),
        "1, 2, 3,",
    ];
    texts.iter().map(|t| tok.encode(t, true, true)).collect()
}

fn check(flash: bool) {
    let Some(path) = model_path() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let mut model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).unwrap();
    model.set_flash_attn(flash);
    let n_vocab = model.hparams().n_vocab;
    let prompts = prompts(&tok);
    assert!(prompts[2].len() > 512, "{}", prompts[2].len());
    let n_ctx = 1024;
    let new = || -> Vec<State> {
        prompts
            .iter()
            .map(|_| model.new_state(n_ctx).unwrap())
            .collect()
    };
    let (mut alone, mut together) = (new(), new());
    let mut next = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let a = model.forward(&mut alone[i], p, false).unwrap().to_vec();
        let b = model.forward(&mut together[i], p, false).unwrap();
        assert_eq!(a, b);
        next.push(argmax(&a));
    }
    let mut batch = Batch::new();
    for step in 0..6 {
        // Sequence 1 sits out every other step, as a finished or prefilling slot would.
        let active: Vec<usize> = (0..prompts.len())
            .filter(|&i| i != 1 || step % 2 == 0)
            .collect();
        let want: Vec<Vec<f32>> = active
            .iter()
            .map(|&i| {
                model
                    .forward(&mut alone[i], &[next[i]], false)
                    .unwrap()
                    .to_vec()
            })
            .collect();
        let tokens: Vec<[u32; 1]> = active.iter().map(|&i| [next[i]]).collect();
        let mut segs: Vec<Segment> = together
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .zip(&tokens)
            .map(|((_, state), t)| Segment { state, tokens: t })
            .collect();
        let got = model.forward_segments(&mut batch, &mut segs).unwrap();
        assert_eq!(got.len(), active.len() * n_vocab);
        for (j, &i) in active.iter().enumerate() {
            let g = &got[j * n_vocab..(j + 1) * n_vocab];
            let differ = g.iter().zip(&want[j]).filter(|(a, b)| a != b).count();
            assert_eq!(
                differ, 0,
                "flash {flash}, step {step}, sequence {i}: {differ} logits differ"
            );
            next[i] = argmax(g);
        }
        for &i in &active {
            assert_eq!(alone[i].len(), together[i].len());
        }
    }

    // A three-token segment beside a one-token one equals a lone forward of the three tokens
    // with every row rounded as decoding.
    let three = [next[0], 236743, 236770];
    alone[0].set_rows_as_decode(true);
    let want0 = model
        .forward(&mut alone[0], &three, false)
        .unwrap()
        .to_vec();
    let want3 = model
        .forward(&mut alone[3], &[next[3]], false)
        .unwrap()
        .to_vec();
    let (s0, rest) = together.split_at_mut(1);
    let mut segs = [
        Segment {
            state: &mut s0[0],
            tokens: &three,
        },
        Segment {
            state: &mut rest[2],
            tokens: &[next[3]],
        },
    ];
    let got = model.forward_segments(&mut batch, &mut segs).unwrap();
    assert!(got[..n_vocab] == want0[..], "three-token segment");
    assert!(got[n_vocab..] == want3[..], "one-token segment beside it");
}

/// Both attention paths in one test: tests run in parallel, and two spinning thread pools on
/// a two-core machine would slow each other down many times over.
#[test]
fn segments_equal_separate_forwards() {
    check(false);
    check(true);
}

#[test]
fn a_failed_batch_leaves_every_cache_as_it_was() {
    let Some(path) = model_path() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).unwrap();
    let mut a = model.new_state(8).unwrap();
    let mut b = model.new_state(2).unwrap();
    model.forward(&mut a, &[2, 651], false).unwrap();
    model.forward(&mut b, &[2, 651], false).unwrap();
    let mut batch = Batch::new();
    let mut segs = [
        Segment {
            state: &mut a,
            tokens: &[100],
        },
        Segment {
            state: &mut b,
            tokens: &[100],
        },
    ];
    let err = model.forward_segments(&mut batch, &mut segs).unwrap_err();
    assert!(
        matches!(err, ModelError::ContextExceeded { n_ctx: 2, .. }),
        "{err}"
    );
    assert_eq!((a.len(), b.len()), (2, 2));
    let big = vec![100u32; 513];
    let mut segs = [Segment {
        state: &mut a,
        tokens: &big,
    }];
    let err = model.forward_segments(&mut batch, &mut segs).unwrap_err();
    assert!(matches!(err, ModelError::BatchTooLarge { rows: 513, .. }));
}
