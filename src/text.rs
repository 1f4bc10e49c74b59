//! Text that came from a caller, made safe to echo: in an
//! `error_description`, an audit field or a log line, a control character
//! (a newline forging a log line, an ANSI escape) or a bidirectional override
//! is shown escaped, never raw.

use std::borrow::Cow;

/// Whether `c` must not appear raw in echoed text: C0/C1 controls and DEL,
/// and the Unicode format characters that reorder or hide text.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` with every unsafe character replaced by its `\u{…}` escape.
/// Borrowed (no allocation) when nothing needs escaping.
pub fn escape_unsafe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape_unsafe`] for an owned or static description.
pub fn escape_cow(text: Cow<'static, str>) -> Cow<'static, str> {
    match escape_unsafe(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => Cow::Owned(escaped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    //  * a newline that would start a forged log line
    //  * an ANSI escape sequence
    //  * a right-to-left override
    #[test]
    fn unsafe_characters_are_escaped() {
        assert_eq!(escape_unsafe("plain text"), Cow::Borrowed("plain text"));
        assert_eq!(escape_unsafe("a\nb"), "a\\u{a}b");
        assert_eq!(escape_unsafe("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_unsafe("x\u{202e}y"), "x\\u{202e}y");
        assert!(!escape_unsafe("\r\t\u{7f}\u{85}").chars().any(is_unsafe));
    }
}
