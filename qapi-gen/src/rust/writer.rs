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

    pub fn blank(&mut self) {
        self.out.push('\n');
    }

    /// Writes `text` and indents what follows.
    pub fn open(&mut self, text: &str) {
        self.line(text);
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
    /// code blocks (QAPI docs are reStructuredText, not Rust).
    pub fn doc(&mut self, text: &str) {
        let mut blank_run = true;
        for l in text.lines() {
            let t = l.trim();
            if t.is_empty() {
                if !blank_run {
                    self.line("///");
                }
                blank_run = true;
                continue;
            }
            blank_run = false;
            // Escape what rustdoc would take as markup of its own.
            let t = t.replace('`', "'");
            let t = if t.starts_with('#')
                || t.starts_with('-') && t.len() > 1 && t[1..].chars().all(|c| c == '-')
            {
                format!("\\{t}")
            } else {
                t
            };
            self.line(&format!("/// {t}"));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}
