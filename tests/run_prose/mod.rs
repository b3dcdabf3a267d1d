//! Deterministic, natural-ish English prose for the tests that need long inputs (a prompt past the
//! sliding window, a perplexity text of several chunks). Sentences are assembled from hand-written
//! parts by a fixed-seed generator, so the text is the same on every run and every machine.

use infer::sample::Rng;

const OPENINGS: &[&str] = &[
    "In the early morning",
    "Late that autumn",
    "When the rain finally stopped",
    "Before the market opened",
    "Long after the others had gone home",
    "On the first warm day of spring",
    "Every evening after supper",
    "During the long winter",
    "Just before the harvest",
    "At the edge of the old forest",
];
const SUBJECTS: &[&str] = &[
    "the old fisherman",
    "a young teacher from the valley",
    "the miller's daughter",
    "two travelling musicians",
    "the village doctor",
    "a tired shepherd",
    "the keeper of the lighthouse",
    "a merchant from the coast",
    "the baker and his wife",
    "a curious boy named Thomas",
    "the widow who lived by the bridge",
    "an elderly carpenter",
];
const ACTIONS: &[&str] = &[
    "carried a basket of bread",
    "wrote a long letter",
    "repaired the broken fence",
    "walked slowly",
    "told a story about the sea",
    "counted the boats in the harbour",
    "planted a row of apple trees",
    "sang an old song",
    "searched for a lost key",
    "painted the front door blue",
    "read the newspaper aloud",
    "gathered firewood",
];
const PLACES: &[&str] = &[
    "to the market near the river",
    "along the narrow road to the church",
    "behind the school",
    "beside the quiet canal",
    "in the square",
    "up the hill towards the windmill",
    "down to the harbour",
    "across the fields",
    "at the inn by the crossroads",
    "near the old stone well",
];
const REASONS: &[&str] = &[
    "because the winter had been hard",
    "although nobody had asked",
    "so that the children would have something to remember",
    "while the bells were ringing",
    "as the sun rose over the hills",
    "even though the wind was cold",
    "since the mayor had promised a reward",
    "before the first snow arrived",
];
const REFLECTIONS: &[&str] = &[
    "Nobody in the village could explain why it mattered so much.",
    "It was, people said later, the beginning of a long friendship.",
    "The neighbours watched from their windows and said nothing.",
    "Some of them laughed, but most of them understood.",
    "By noon the whole town knew about it.",
    "It seemed a small thing at the time.",
    "The dogs barked, and then everything was quiet again.",
    "Years afterwards, the story was still told at weddings.",
    "There was a smell of smoke and fresh rain in the air.",
    "Nothing like it had happened since the great flood.",
];

fn pick<'a>(rng: &mut Rng, options: &[&'a str]) -> &'a str {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

/// About `n_sentences` sentences in paragraphs of four to six.
pub fn prose(seed: u64, n_sentences: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    let mut in_paragraph = 0;
    let mut paragraph_len = 5;
    for _ in 0..n_sentences {
        let sentence = match rng.next_u64() % 4 {
            0 => pick(&mut rng, REFLECTIONS).to_string(),
            1 => {
                let s = pick(&mut rng, SUBJECTS);
                let mut cap = s[..1].to_uppercase();
                cap.push_str(&s[1..]);
                format!(
                    "{cap} {} {}, {}.",
                    pick(&mut rng, ACTIONS),
                    pick(&mut rng, PLACES),
                    pick(&mut rng, REASONS)
                )
            }
            _ => format!(
                "{}, {} {} {}.",
                pick(&mut rng, OPENINGS),
                pick(&mut rng, SUBJECTS),
                pick(&mut rng, ACTIONS),
                pick(&mut rng, PLACES)
            ),
        };
        if in_paragraph > 0 {
            out.push(' ');
        }
        out.push_str(&sentence);
        in_paragraph += 1;
        if in_paragraph == paragraph_len {
            out.push_str("\n\n");
            in_paragraph = 0;
            paragraph_len = 4 + (rng.next_u64() % 3) as usize;
        }
    }
    out
}

/// The varied prompt set of the greedy comparisons (llama.cpp vs CPU, CPU vs GPU): short, code,
/// list, French, Japanese, chat markup, and one past Gemma 3's 512-token window.
#[allow(dead_code)] // not every test that includes this module compares greedy text
pub fn greedy_prompts() -> Vec<(&'static str, String)> {
    vec![
        ("short", "The capital of France is".to_string()),
        (
            "code",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n".to_string(),
        ),
        (
            "list",
            "Things to pack for a hiking trip:\n1. Water\n2. A map\n3.".to_string(),
        ),
        (
            "french",
            "Il était une fois, dans un petit village de Provence, une vieille femme qui".to_string(),
        ),
        ("japanese", "日本の首都は東京です。東京には".to_string()),
        (
            "chat",
            "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n<start_of_turn>model\n"
                .to_string(),
        ),
        ("long", prose(11, 48)),
    ]
}
