//! The codepoint classes our BPE pre-tokenizers split on, against llama.cpp's own table, for
//! every codepoint: a category or whitespace bit that differs would split some text
//! differently from llama.cpp.

use ggml_ref::llama::unicode_flags;
use infer::tokenizer::codepoint_class;

#[test]
fn every_codepoint_has_llama_cpp_category_and_whitespace_bits() {
    let mut mismatches = Vec::new();
    for cpt in (0..0x11_0000u32).chain([0x11_0000, 0xFFFF_FFFF]) {
        let theirs = unicode_flags(cpt) & 0x1FF;
        let ours = codepoint_class(cpt);
        if ours != theirs {
            mismatches.push((cpt, ours, theirs));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} codepoints differ, first: {:x?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
