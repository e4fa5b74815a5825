//! Diagnostics: collected, each with its location and context, printed as
//! `FILE:LINE[:COL]: message`.

use std::fmt;
use std::path::PathBuf;

use crate::source::Info;

/// One problem found in a schema.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Where; `None` for problems that have no place in a file (an
    /// unreadable top-level file).
    pub info: Option<Info>,
    /// 1-based column, tabs expanded to multiples of 8, for syntax errors.
    pub col: Option<u32>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(info: &Info, message: impl Into<String>) -> Self {
        Diagnostic {
            info: Some(info.clone()),
            col: None,
            message: message.into(),
        }
    }

    pub fn at_col(info: &Info, col: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            info: Some(info.clone()),
            col: Some(col),
            message: message.into(),
        }
    }

    pub fn bare(message: impl Into<String>) -> Self {
        Diagnostic {
            info: None,
            col: None,
            message: message.into(),
        }
    }

    /// `FILE:LINE[:COL]` without the context lines.
    pub fn location(&self) -> Option<String> {
        let info = self.info.as_ref()?;
        Some(match self.col {
            Some(c) => format!("{}:{}", info.loc(), c),
            None => info.loc(),
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.info, self.location()) {
            (Some(info), Some(loc)) => {
                for line in info.context_lines() {
                    writeln!(f, "{line}")?;
                }
                write!(f, "{loc}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

/// Everything that went wrong while loading a schema, in the order QEMU's
/// generator would have met it, plus the files read (for rebuild tracking).
#[derive(Debug, Clone, thiserror::Error)]
pub struct SchemaError {
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<PathBuf>,
}

impl SchemaError {
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn first(&self) -> Option<&Diagnostic> {
        self.diagnostics.first()
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
