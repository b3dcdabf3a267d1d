//! The text corpus the tokenizer tests run through both infer and llama.cpp: whitespace runs,
//! newlines, code, many scripts, emoji sequences, numbers, URLs, special-token spellings.

/// Strings chosen to hit every branch of the pre-tokenizers and the special-token splitter.
pub fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "  ",
        "   ",
        "\t",
        "\t\t",
        " \t \t",
        "\n",
        "\n\n",
        "\n\n\n\n",
        "\r\n",
        "line one\r\nline two\r\n",
        "Hello",
        "Hello world",
        " Hello world",
        "Hello world ",
        "  leading and trailing  ",
        "Hello,   world!   How are you?",
        "mixed \t whitespace\t \n end",
        "fn main() {\n    println!(\"hi {}\", 42);\n}\n",
        "def f(x):\n    if x:\n        return [i ** 2 for i in range(x)]\n    return None\n",
        "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
        "SELECT * FROM users WHERE id = 1;",
        "<html><body><div class=\"x\">hi</div></body></html>",
        "<table><tr><td>1</td></tr></table>",
        "中文分词测试，这是一个句子。",
        "日本語のテキストです。カタカナとひらがな",
        "한국어 텍스트입니다",
        "Emoji: 😀🎉👍🏽 and 👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag",
        "👍🏻👍🏼👍🏽👍🏾👍🏿",
        "café naïve résumé Ångström",
        "e\u{301} combining acute, a\u{30a}, n\u{303}",
        "Zalgo: Z\u{36b}\u{33e}a\u{357}l\u{30f}g\u{34b}o",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया, हिन्दी पाठ",
        "สวัสดีครับ ภาษาไทย",
        "Привет, мир! Ёжик",
        "Γειά σου Κόσμε",
        "0123456789",
        "3.14159 2,718 1e-9 -42 +7 100000000000",
        "Numbers: 1 12 123 1234 12345 123456",
        "https://example.com/path?query=1&x=y#frag",
        "user@example.org, ftp://files.example.net/a/b.tar.gz",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "<bos>",
        "<bos>Hello<eos>",
        "<start_of",
        "<start_of_turn",
        "text <end_of_turn> more",
        "</s> and <s> and <unk> and <pad> and <mask>",
        "<unused0><unused6241>[multimodal]",
        "<b>bold</b> <i>it</i> <code>x</code>",
        "\u{1}\u{2}\u{7f} control chars",
        "\u{E000}\u{F8FF} private use",
        "\u{10FFFF} and \u{FFFD}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
        "∀x∈ℝ: x² ≥ 0 → √x ∈ ℝ⁺",
        "tabs\tinside\twords",
        "\n\nleading newlines",
        "trailing newlines\n\n\n",
        "                                        forty spaces",
        "a\u{a0}b\u{2003}c\u{3000}d",
        "I'm sure you've heard they'll say it's 'quoted'",
        "ALL CAPS SENTENCE. lower case sentence.",
        "--- *** ___ ~~~ ``` ''' \"\"\"",
        "\\escaped\\ \"quotes\" and 'apostrophes'",
        "I'M SURE IT'S THEY'LL WE'RE YOU'VE HE'D",
        "don't 'tis rock'n'roll 's 'll",
        "\r\n\r\n  \r\n\t\n",
        "1234567890123 ١٢٣٤ ১২৩ Ⅻ ½ ¾ １２３ ²³",
        "<|begin_of_text|>Hi<|eot_id|><|end_of_text|>",
        "$100 + 5% = ^caret~tilde|pipe <=> `tick`",
        "¡Hola! ¿Qué tal? «quotes» „low“ ‘single’ — dash … ellipsis",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(
        "The quick brown fox jumps over the lazy dog. ".repeat(20)
            + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
               incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis \
               nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.",
    );
    v.push("x".repeat(300));
    v.push("\u{2581}already escaped\u{2581}space".to_string());
    v
}
