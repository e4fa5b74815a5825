//! An indenting text writer for generated code.

#[derive(Default)]
pub struct Writer {
    out: String,
    indent: usize,
}

impl Writer {
    pub fn line(&mut self, text: &str) {
        if text.is_empty() {
            self.out.push('\n');
            return;
        }
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Like [`Writer::line`], formatting straight into the buffer.
    pub fn linef(&mut self, args: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        let _ = self.out.write_fmt(args);
        self.out.push('\n');
    }

    pub fn blank(&mut self) {
        self.out.push('\n');
    }

    /// Writes `text` and indents what follows.
    pub fn open(&mut self, text: &str) {
        self.line(text);
        self.indent += 1;
    }

    /// Indents what follows (after a line written with `linef`).
    pub fn indent(&mut self) {
        self.indent += 1;
    }

    /// Dedents and writes `text`.
    pub fn close(&mut self, text: &str) {
        self.indent = self.indent.saturating_sub(1);
        self.line(text);
    }

    /// `#[cfg(..)]` when there is a condition.
    pub fn cfg(&mut self, pred: &Option<String>) {
        if let Some(p) = pred {
            self.line(&format!("#[cfg({p})]"));
        }
    }

    /// Doc comment lines; indentation is dropped so that rustdoc sees no
    /// code blocks (QAPI docs are reStructuredText, not Rust), except that
    /// the continuation lines of a list item are indented to its text, as
    /// Markdown wants them.
    pub fn doc(&mut self, text: &str) {
        let mut blank_run = true;
        // Indentation of the text of the list item being continued.
        let mut item_indent = 0;
        for l in text.lines() {
            let t = l.trim();
            if t.is_empty() {
                if !blank_run {
                    self.line("///");
                }
                blank_run = true;
                item_indent = 0;
                continue;
            }
            blank_run = false;
            let indent = match list_marker_width(t) {
                Some(w) => {
                    item_indent = w;
                    0
                }
                None => item_indent,
            };
            // Escape what rustdoc would take as markup of its own.
            let t: std::borrow::Cow<'_, str> = if t.contains('`') {
                t.replace('`', "'").into()
            } else {
                t.into()
            };
            let escape = t.starts_with('#')
                || t.starts_with('-') && t.len() > 1 && t[1..].chars().all(|c| c == '-');
            let backslash = if escape { "\\" } else { "" };
            self.linef(format_args!("/// {:indent$}{backslash}{t}", ""));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The width of the list marker that starts `line` with the space after it
/// (`- `, `* `, `1) `, `12. `), if it starts with one.
fn list_marker_width(line: &str) -> Option<usize> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let marker = match line.as_bytes() {
        [b'-' | b'*' | b'+', b' ', ..] => 1,
        b if (1..=9).contains(&digits) && matches!(b.get(digits), Some(b'.' | b')')) => digits + 1,
        _ => return None,
    };
    let spaces = line[marker..].bytes().take_while(|&c| c == b' ').count();
    (spaces > 0).then_some(marker + spaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> String {
        let mut w = Writer::default();
        w.doc(text);
        w.finish()
    }

    #[test]
    fn list_items_keep_their_continuation_indented() {
        assert_eq!(
            doc("Text\n  continued.\n\n1) one\n   more\n- two\n  more\n\nafter"),
            "/// Text\n/// continued.\n///\n/// 1) one\n///    more\n/// - two\n///   more\n///\n/// after\n"
        );
        assert_eq!(list_marker_width("12.  x"), Some(5));
        assert_eq!(list_marker_width("-x"), None);
        assert_eq!(list_marker_width("1.5 litres"), None);
        assert_eq!(list_marker_width("2024) x"), Some(6));
    }
}
