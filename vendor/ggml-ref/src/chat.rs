//! llama.cpp's built-in chat formats (`llama_chat_apply_template`, src/llama-chat.cpp), for
//! tests that hold infer's chat templates against them. llama.cpp picks the format by name
//! ("gemma", "chatml", ...) or by markers it finds in a Jinja template's text.

use crate::sys;
use std::ffi::{c_char, CString};

/// The text llama.cpp formats `messages` (role, content) into with template `tmpl` (a built-in
/// name or a Jinja source), ending with an assistant header when `add_assistant`. `None` when
/// llama.cpp does not know the template or a string holds a NUL byte.
pub fn apply_template(
    tmpl: &str,
    messages: &[(&str, &str)],
    add_assistant: bool,
) -> Option<String> {
    let tmpl = CString::new(tmpl).ok()?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .map(|(r, c)| Some((CString::new(*r).ok()?, CString::new(*c).ok()?)))
        .collect::<Option<_>>()?;
    let chat: Vec<sys::llama_chat_message> = owned
        .iter()
        .map(|(r, c)| sys::llama_chat_message {
            role: r.as_ptr(),
            content: c.as_ptr(),
        })
        .collect();
    let mut buf: Vec<u8> = vec![0; 1024];
    loop {
        let len = i32::try_from(buf.len()).ok()?;
        // SAFETY: `tmpl` and every role/content pointer in `chat` point into CStrings that live
        // until the end of this function; `buf` is writable for `len` bytes and llama.cpp writes
        // at most that many (strncpy).
        let n = unsafe {
            sys::llama_chat_apply_template(
                tmpl.as_ptr(),
                chat.as_ptr(),
                chat.len(),
                add_assistant,
                buf.as_mut_ptr() as *mut c_char,
                len,
            )
        };
        let n = usize::try_from(n).ok()?;
        if n <= buf.len() {
            buf.truncate(n);
            return String::from_utf8(buf).ok();
        }
        buf = vec![0; n];
    }
}
