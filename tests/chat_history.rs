//! The chat's token history (`chat::history`) on the real Gemma 3 270M tokenizer and model.
//!
//! 1. Built a turn at a time (the text difference of two renderings, tokenized alone), the
//!    history must equal the whole conversation rendered and tokenized at once, for the
//!    built-in Gemma format, Gemma's own Jinja template and two other formats, over several
//!    turns with replies that the templates trim: otherwise greedy chat replies would change.
//! 2. After the chat outgrows a small context, the engine's cache must hold exactly the kept
//!    tokens: the history is a prefix of what the engine says it caches, the cells hold
//!    positions 0..len once each, and layer 0's keys and values equal a fresh forward pass over
//!    those tokens at their new positions within a stated tolerance (tests/kv_shift.rs's bar).

use std::path::Path;

use infer::chat::history::{History, Keep};
use infer::chat::{Builtin, ChatTemplate, Message, Role};
use infer::engine::{End, Engine, GenOptions};
use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions, State};
use infer::sample::{Sampler, SamplerParams};
use infer::tokenizer::Tokenizer;

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/gemma-3-270m-q4_k_m.gguf"
);

/// Gemma 3's template as Google ships it (the string-content branch).
const GEMMA_JINJA: &str = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}";

fn model_file() -> Option<GgufFile> {
    let p = Path::new(MODEL);
    if !p.exists() {
        eprintln!("skipping: {MODEL} is absent (scripts/fetch-model.sh fetches it)");
        return None;
    }
    Some(GgufFile::open(p).expect("open gguf"))
}

fn templates(g: &GgufFile, tok: &Tokenizer) -> Vec<(String, ChatTemplate)> {
    let dir = std::env::temp_dir().join(format!("infer-chat-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let jinja = dir.join("gemma.jinja");
    std::fs::write(&jinja, GEMMA_JINJA).expect("write template");
    let mut out: Vec<(String, ChatTemplate)> = [Builtin::Gemma, Builtin::Chatml, Builtin::Llama3]
        .into_iter()
        .map(|b| (b.name().to_string(), ChatTemplate::builtin(b)))
        .collect();
    let t = ChatTemplate::for_model(g, tok, Some(jinja.to_str().expect("utf-8"))).expect("jinja");
    out.push(("gemma.jinja".into(), t));
    out
}

#[test]
fn incremental_history_equals_the_whole_rendering() {
    let Some(g) = model_file() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    // Replies with the spaces and newlines a model leaves that Gemma's template trims, one that
    // trims to nothing, and text that spells a special token.
    let turns = [
        ("Hello! Who are you?", "  I am a model.\n"),
        (
            "Tell me a <end_of_turn> story.",
            "Once upon a time...\n\nThe end.",
        ),
        ("Again, shorter.", "\n"),
        ("Thanks", "You're welcome!"),
    ];
    for system in [None, Some("Answer briefly.")] {
        for (name, t) in templates(&g, &tok) {
            let mut conv: Vec<Message> = system
                .map(|s| Message::new(Role::System, s))
                .into_iter()
                .collect();
            let mut h = History::default();
            for (i, (user, reply)) in turns.iter().enumerate() {
                conv.push(Message::new(Role::User, *user));
                let turn = h.next_turn(&t, &tok, &conv, Keep::System);
                let (whole, _) = t.tokens(&tok, &conv, true);
                assert_eq!(turn.tokens, whole, "{name}, system {system:?}, turn {i}");
                if i > 0 {
                    assert!(turn.start > 0, "{name} turn {i} rendered whole again");
                }
                // The generated tokens need not be the reply's re-tokenization: the next turn
                // re-tokenizes the reply as the whole rendering does.
                let generated = tok.encode(reply, false, false);
                h.commit(turn, &[], &generated);
                conv.push(Message::new(Role::Assistant, *reply));
            }
        }
    }
}

#[test]
fn default_keep_is_the_system_part_or_bos() {
    let Some(g) = model_file() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let t = ChatTemplate::builtin(Builtin::Gemma);
    let conv = [
        Message::new(Role::System, "Answer briefly."),
        Message::new(Role::User, "Hello"),
    ];
    let turn = History::default().next_turn(&t, &tok, &conv, Keep::System);
    // <bos><start_of_turn>user\nAnswer briefly.\n\n | Hello...
    let kept =
        String::from_utf8(tok.detokenize(&turn.tokens[..turn.keep], false, true)).expect("utf-8");
    assert_eq!(kept, "<bos><start_of_turn>user\nAnswer briefly.\n\n");
    let turn = History::default().next_turn(&t, &tok, &conv[1..], Keep::System);
    assert_eq!(turn.keep, 1, "BOS only without a system message");
    let turn = History::default().next_turn(&t, &tok, &conv[1..], Keep::Tokens(2));
    assert_eq!(turn.keep, 3, "--keep 2 counts after BOS");
    let turn = History::default().next_turn(&t, &tok, &conv[1..], Keep::FirstPrompt);
    assert_eq!(turn.keep, turn.tokens.len());
}

fn f16_round(x: &mut [f32]) {
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// `(position, cell)` of the filled cells of layer `il`'s group, by position.
fn filled(st: &State, il: usize) -> Vec<(usize, usize)> {
    let g = st.kv().layer(il).group();
    let mut v: Vec<(usize, usize)> = st
        .kv()
        .cells(g)
        .positions()
        .iter()
        .enumerate()
        .filter(|(_, &p)| p >= 0)
        .map(|(c, &p)| (p as usize, c))
        .collect();
    v.sort();
    v
}

/// Largest |a - b| over a row, relative to the row's largest |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    d / b.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[test]
fn chat_shift_keeps_exactly_the_kept_tokens() {
    let Some(g) = model_file() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let model = Model::load(&g, &ModelOptions { n_threads: 2 }).expect("load");
    let hp = model.hparams().clone();
    let t = ChatTemplate::builtin(Builtin::Gemma);
    let n_ctx = 256;
    let mut engine = Engine::new(&model, &tok, n_ctx).expect("engine");
    let mut sampler = Sampler::new(SamplerParams {
        temp: 0.0,
        ..SamplerParams::default()
    });
    let opts = GenOptions {
        n_predict: Some(24),
        stops: Vec::new(),
    };
    let long = "Tell me about the old mill by the river, the bridge and the village. ".repeat(3);
    let mut conv = vec![Message::new(Role::System, "Answer briefly.")];
    let mut h = History::default();
    let mut n_shifts = 0;
    for i in 0..6 {
        conv.push(Message::new(Role::User, format!("{i}: {long}")));
        let turn = h.next_turn(&t, &tok, &conv, Keep::System);
        assert!(turn.keep > 1);
        engine.set_context_shift(Some(turn.keep));
        let mut prompt = turn.tokens.clone();
        let mut shifts = engine.make_room(&mut prompt).expect("room");
        let gen = engine
            .generate(
                &prompt,
                &mut sampler,
                &opts,
                None,
                &mut |_, _| {},
                &mut |_| Ok(()),
            )
            .expect("generate");
        assert_ne!(gen.end, End::ContextFull);
        assert!(!gen.tokens.is_empty(), "turn {i} has a reply");
        shifts.extend_from_slice(&gen.shifts);
        n_shifts += shifts.len();
        h.commit(turn, &shifts, &gen.tokens);
        conv.push(Message::new(Role::Assistant, gen.text.clone()));

        // What the engine caches: the history, then what is left of the reply.
        let cached = engine.cached();
        assert!(cached.len() < n_ctx);
        assert!(
            cached.starts_with(h.tokens()),
            "turn {i}: the history is not what the cache holds"
        );
        assert!(cached.starts_with(&h.tokens()[..h.keep()]));
    }
    assert!(n_shifts >= 2, "the conversation never outgrew the context");

    // The cache holds positions 0..len once each, and layer 0 (which sees only the token and
    // its position) equals a fresh pass over the cached tokens at their positions. Keys were
    // rotated after being stored as f16 (two roundings) and the rows were computed in other
    // batch shapes than the fresh pass (prompt batches, single decode rows), so both are held
    // to max |diff| <= 2^-8 of the row's max; a wrong rotation or a wrong cell is off by tens
    // of percent.
    let st = engine.state();
    let cached = engine.cached().to_vec();
    let cells = filled(st, 0);
    let positions: Vec<usize> = cells.iter().map(|&(p, _)| p).collect();
    assert_eq!(positions, (0..st.len()).collect::<Vec<_>>());
    let mut fresh = model.new_state(n_ctx).expect("state");
    model.forward(&mut fresh, &cached, false).expect("fresh");
    let fresh_cells = filled(&fresh, 0);
    let (nk, nv) = (hp.n_k(), hp.n_v());
    let (mut a, mut b) = (vec![0.0f32; nk.max(nv)], vec![0.0f32; nk.max(nv)]);
    let (mut worst_k, mut worst_v) = (0.0f32, 0.0f32);
    for (&(p, c), &(fp, fc)) in cells.iter().zip(&fresh_cells) {
        assert_eq!(p, fp);
        st.kv().layer(0).read_v(c, &mut a[..nv]);
        fresh.kv().layer(0).read_v(fc, &mut b[..nv]);
        f16_round(&mut b[..nv]);
        worst_v = worst_v.max(rel_diff(&a[..nv], &b[..nv]));
        st.kv().layer(0).read_k(c, &mut a[..nk]);
        fresh.kv().layer(0).read_k(fc, &mut b[..nk]);
        worst_k = worst_k.max(rel_diff(&a[..nk], &b[..nk]));
    }
    eprintln!("layer 0 after {n_shifts} chat shifts: keys off by {worst_k:.2e}, values by {worst_v:.2e} of the row max");
    assert!(worst_k <= 1.0 / 256.0, "keys off by {worst_k:.2e}");
    assert!(worst_v <= 1.0 / 256.0, "values off by {worst_v:.2e}");
}

#[test]
fn regen_after_a_shift_cut_into_the_turn_evaluates_it_again() {
    let Some(g) = model_file() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let model = Model::load(&g, &ModelOptions { n_threads: 2 }).expect("load");
    let t = ChatTemplate::builtin(Builtin::Gemma);
    let n_ctx = 256;
    let mut engine = Engine::new(&model, &tok, n_ctx).expect("engine");
    let greedy = || {
        Sampler::new(SamplerParams {
            temp: 0.0,
            ..SamplerParams::default()
        })
    };
    let generate = |engine: &mut Engine, prompt: &[u32], n: usize| {
        let opts = GenOptions {
            n_predict: Some(n),
            stops: Vec::new(),
        };
        engine
            .generate(
                prompt,
                &mut greedy(),
                &opts,
                None,
                &mut |_, _| {},
                &mut |_| Ok(()),
            )
            .expect("generate")
    };
    // A first message of ~230 tokens and a reply long enough to fill the context: the shift
    // while decoding drops the older half after the kept system part, inside the message.
    let text = format!(
        "Count the words: {} End.",
        "alpha beta gamma delta epsilon zeta eta theta. ".repeat(22)
    );
    let conv = vec![
        Message::new(Role::System, "Answer briefly."),
        Message::new(Role::User, text.as_str()),
    ];
    let mut h = History::default();
    let turn = h.next_turn(&t, &tok, &conv, Keep::System);
    let first_prompt = turn.tokens.clone();
    assert!(
        first_prompt.len() > 200 && first_prompt.len() < 245,
        "{}",
        first_prompt.len()
    );
    engine.set_context_shift(Some(turn.keep));
    let mut prompt = turn.tokens.clone();
    let mut shifts = engine.make_room(&mut prompt).expect("room");
    assert!(shifts.is_empty());
    // Unless the model ends its reply within a few tokens, it runs into the context.
    let mut sampler = greedy();
    let opts = GenOptions {
        n_predict: Some(60),
        stops: Vec::new(),
    };
    let gen = engine
        .generate(
            &prompt,
            &mut sampler,
            &opts,
            None,
            &mut |_, _| {},
            &mut |_| Ok(()),
        )
        .expect("generate");
    shifts.extend_from_slice(&gen.shifts);
    let first_reply = gen.tokens.clone();
    h.commit(turn, &shifts, &gen.tokens);
    if shifts.is_empty() {
        // The model ended its reply before the context filled: nothing to regenerate anew.
        eprintln!(
            "the reply ended after {} tokens, before a shift",
            first_reply.len()
        );
        assert!(!h.last_damaged());
        return;
    }
    assert!(h.last_damaged(), "the shift did not cut into the message");
    assert!(h.tokens().len() < first_prompt.len());

    // /regen: the whole message again, evaluated anew after the kept start, and greedy gives
    // the reply it gave the first time.
    let again = h.again(&conv).expect("again");
    assert_eq!(again.tokens, first_prompt);
    let mut prompt = again.tokens.clone();
    assert!(engine.make_room(&mut prompt).expect("room").is_empty());
    let regen = generate(&mut engine, &prompt, 8);
    assert!(regen.n_prefilled >= first_prompt.len() - again.keep);
    assert_eq!(regen.tokens[..], first_reply[..regen.tokens.len()]);
}
