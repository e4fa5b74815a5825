//! Where things come from: schema files, lines and the definition being
//! checked. Rendering follows QEMU's layout so editors and people who know
//! QEMU's generator find their way (`In file included from`, `In struct`).

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// One schema file as named by the user (or by an `include` directive).
#[derive(Debug)]
pub struct SourceFile {
    /// The name as printed in diagnostics: the command-line path, or the
    /// including file's directory joined with the include string.
    pub name: String,
    /// Absolute, lexically normalised path: the identity used for include
    /// loops and repeated includes.
    pub abs: PathBuf,
    /// The `include` directive that pulled this file in, if any.
    pub included_from: Option<Info>,
}

/// The definition an [`Info`] belongs to, e.g. `struct 'Foo'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defn {
    pub meta: String,
    pub name: String,
}

/// A source location: file and line, plus the enclosing definition once the
/// expression checker has named it.
#[derive(Debug, Clone)]
pub struct Info {
    pub file: Rc<SourceFile>,
    pub line: u32,
    pub defn: Option<Rc<Defn>>,
}

impl Info {
    pub fn new(file: Rc<SourceFile>, line: u32) -> Self {
        Info {
            file,
            line,
            defn: None,
        }
    }

    /// `FILE:LINE`
    pub fn loc(&self) -> String {
        format!("{}:{}", self.file.name, self.line)
    }

    pub fn with_defn(&self, meta: &str, name: &str) -> Info {
        Info {
            file: self.file.clone(),
            line: self.line,
            defn: Some(Rc::new(Defn {
                meta: meta.to_string(),
                name: name.to_string(),
            })),
        }
    }

    pub fn defn_name(&self) -> Option<&str> {
        self.defn.as_deref().map(|d| d.name.as_str())
    }

    pub fn defn_meta(&self) -> Option<&str> {
        self.defn.as_deref().map(|d| d.meta.as_str())
    }

    /// The context lines printed before a message: include chain (outermost
    /// first), then the definition.
    pub fn context_lines(&self) -> Vec<String> {
        let mut chain = Vec::new();
        let mut parent = self.file.included_from.clone();
        while let Some(p) = parent {
            chain.push(format!("In file included from {}:", p.loc()));
            parent = p.file.included_from.clone();
        }
        chain.reverse();
        if let Some(d) = &self.defn {
            chain.push(format!("{}: In {} '{}':", self.file.name, d.meta, d.name));
        }
        chain
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.context_lines() {
            writeln!(f, "{line}")?;
        }
        f.write_str(&self.loc())
    }
}

/// Lexical absolute path, like Python's `os.path.abspath`: no symlink
/// resolution, `..` folded textually.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    normalize(&joined)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("/");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` relative to `base`, both made absolute first (Python's
/// `os.path.relpath`).
pub fn relative(path: &Path, base: &Path) -> String {
    let p = absolute(path);
    let b = absolute(base);
    let pc: Vec<_> = p.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = pc.iter().zip(bc.iter()).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        ".".to_string()
    } else {
        out.display().to_string()
    }
}

/// Directory part of a name as Python's `os.path.dirname` gives it.
pub fn dirname(name: &str) -> &str {
    match name.rfind('/') {
        Some(i) => {
            let dir = name[..i].trim_end_matches('/');
            if dir.is_empty() { "/" } else { dir }
        }
        None => "",
    }
}

/// `os.path.join(dir, name)`
pub fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') || dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers_match_python() {
        assert_eq!(dirname("foo.json"), "");
        assert_eq!(dirname("a/b/foo.json"), "a/b");
        assert_eq!(dirname("/foo.json"), "/");
        assert_eq!(join("", "x.json"), "x.json");
        assert_eq!(join("a", "../x.json"), "a/../x.json");
        assert_eq!(
            relative(Path::new("/a/b/../c.json"), Path::new("/a")),
            "c.json"
        );
        assert_eq!(
            relative(Path::new("/a/c.json"), Path::new("/a/b")),
            "../c.json"
        );
    }
}
