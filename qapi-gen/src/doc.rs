//! Documentation blocks (`##` ... `##`): parsed into a definition's
//! description, member and feature descriptions and tagged sections, with
//! the checks QEMU applies to them.

use crate::diagnostic::Diagnostic;
use crate::parser::Text;
use crate::source::Info;

/// Options for documentation checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocOptions {
    /// QEMU 10.1+ typography rules: doc lines at most 70 columns, two spaces
    /// between sentences. Older QEMU schemas (10.0) do not follow them.
    pub style: bool,
}

/// One `#` line of a documentation block, as found in the file.
#[derive(Debug, Clone)]
pub struct DocLine<'a> {
    pub text: &'a str,
    pub pos: usize,
}

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Untagged text: the description (always the first section) and any
    /// later free paragraphs.
    Plain,
    Member,
    Feature,
    Returns,
    Errors,
    Since,
    Todo,
}

impl SectionKind {
    fn tag(self) -> &'static str {
        match self {
            SectionKind::Plain => "Plain",
            SectionKind::Member => "Member",
            SectionKind::Feature => "Feature",
            SectionKind::Returns => "Returns",
            SectionKind::Errors => "Errors",
            SectionKind::Since => "Since",
            SectionKind::Todo => "TODO",
        }
    }

    /// The name used in dumps (`section=Returns`).
    pub fn dump_name(self) -> &'static str {
        match self {
            SectionKind::Todo => "Todo",
            other => other.tag(),
        }
    }

    fn text_required(self) -> bool {
        self != SectionKind::Plain
    }
}

#[derive(Debug, Clone)]
pub struct Section {
    pub info: Info,
    pub kind: SectionKind,
    pub text: String,
    /// Member or feature name for `Member`/`Feature` sections.
    pub name: Option<String>,
    /// Whether a schema member or feature of that name exists.
    pub connected: bool,
}

impl Section {
    fn new(info: Info, kind: SectionKind, name: Option<String>) -> Self {
        Section {
            info,
            kind,
            text: String::new(),
            name,
            connected: false,
        }
    }
}

/// A documentation block: free-form (no symbol) or for one definition.
#[derive(Debug, Clone)]
pub struct Doc {
    pub info: Info,
    pub symbol: Option<String>,
    /// Every section, stored once; the lists below index into it.
    pub store: Vec<Section>,
    /// Sections in text order (index 0 is the description).
    pub order: Vec<usize>,
    pub args: Vec<usize>,
    pub features: Vec<usize>,
    /// Sections other than the description, members and features.
    pub sections: Vec<usize>,
    returns: Option<usize>,
    errors: Option<usize>,
    since: Option<usize>,
}

fn at_name_colon(line: &str) -> Option<(String, usize)> {
    let rest = line.strip_prefix('@')?;
    let colon = rest.find(':')?;
    let name = rest[..colon].to_string();
    let after = &rest[colon + 1..];
    let spaces = after.len() - after.trim_start_matches(' ').len();
    Some((name, 1 + colon + 1 + spaces))
}

fn leading_ws(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `Returns:`, `Since:` ... at the start of a line (but not `Note::`).
fn tagged_section(line: &str) -> Option<(&'static str, usize)> {
    for tag in [
        "Returns", "Errors", "Since", "Notes", "Note", "Examples", "Example", "TODO",
    ] {
        if let Some(rest) = line.strip_prefix(tag)
            && rest.starts_with(':')
            && !rest.starts_with("::")
        {
            let after = &rest[1..];
            let spaces = after.len() - after.trim_start_matches(' ').len();
            return Some((tag, tag.len() + 1 + spaces));
        }
    }
    None
}

/// `::` or `.. qmp-example::` alone at the end of a line starts a literal
/// block.
fn is_literal_start(line: &str) -> bool {
    let Some(rest) = line.strip_suffix("::") else {
        return false;
    };
    let rest = rest.trim_end_matches(' ');
    match rest.strip_prefix("..") {
        Some(r) => {
            r.len() > r.trim_start_matches(' ').len() && r.trim_start_matches(' ') == "qmp-example"
        }
        None => rest.is_empty(),
    }
}

/// Reads a block's lines one at a time, like QEMU's lexer in doc mode.
struct Lines<'a, 't> {
    text: &'a Text<'t>,
    lines: &'a [DocLine<'t>],
    idx: usize,
    opts: DocOptions,
    /// Inside a literal block (`::` or `.. qmp-example::`), where the
    /// typography rules do not apply; `literal_indent` is its indentation.
    literal: bool,
    literal_indent: usize,
}

impl Lines<'_, '_> {
    fn info(&self) -> Info {
        self.text.info_at(self.pos())
    }

    fn pos(&self) -> usize {
        self.lines[self.idx.min(self.lines.len() - 1)].pos
    }

    fn error(&self, msg: impl Into<String>) -> Diagnostic {
        self.text.error_at(self.pos(), msg)
    }

    /// Moves to the next line and returns its text: `None` at the closing
    /// `##`, `""` for an empty `#` line.
    fn next(&mut self) -> Result<Option<String>, Diagnostic> {
        self.idx += 1;
        self.current()
    }

    fn current(&mut self) -> Result<Option<String>, Diagnostic> {
        let Some(line) = self.lines.get(self.idx) else {
            return Err(self.error("documentation block is not closed with '##'"));
        };
        let raw = line.text;
        if raw.starts_with("##") {
            if raw != "##" {
                return Err(self.error(
                    "the closing '##' of a documentation block must stand alone on its line",
                ));
            }
            self.literal = false;
            return Ok(None);
        }
        if raw == "#" {
            return Ok(Some(String::new()));
        }
        if raw.as_bytes().get(1) != Some(&b' ') {
            return Err(self.error("documentation lines need a space after '#'"));
        }
        let text = raw[2..].trim_end().to_string();
        if is_literal_start(&text) {
            self.literal = true;
            self.literal_indent = 0;
        } else if self.literal && !text.is_empty() {
            let indent = leading_ws(&text);
            if self.literal_indent == 0 {
                self.literal_indent = indent;
            } else if indent < self.literal_indent {
                // rST literal blocks end where the indentation decreases.
                self.literal = false;
            }
        }
        if self.opts.style && !self.literal {
            self.check_style(&text)?;
        }
        Ok(Some(text))
    }

    fn check_style(&self, line: &str) -> Result<(), Diagnostic> {
        if line.chars().count() + 2 > 70 {
            let t = line.trim_start_matches(' ');
            let is_url = ["http://", "https://", "ftp://"]
                .iter()
                .any(|p| t.starts_with(p))
                && !t.contains(' ');
            if !is_url {
                return Err(self.error("documentation line is longer than 70 columns"));
            }
        }
        // A sentence end followed by a single space and a capital, digit or
        // '('; "e.g." and list numbers like "1." are not sentence ends.
        let b = line.as_bytes();
        let mut i = 0;
        while i + 2 < b.len() {
            if b".!?".contains(&b[i])
                && b[i + 1] == b' '
                && (b[i + 2].is_ascii_uppercase() || b[i + 2].is_ascii_digit() || b[i + 2] == b'(')
            {
                let before = &line[..=i];
                let eg = before.ends_with("e.g.")
                    && (before.len() == 4
                        || !line.as_bytes()[before.len() - 5].is_ascii_alphanumeric()
                            && line.as_bytes()[before.len() - 5] != b'_');
                let list_number = {
                    let t = before.trim_start_matches(' ');
                    t.len() == 2 && t.as_bytes()[0].is_ascii_digit() && t.ends_with('.')
                };
                if !eg && !list_number {
                    let line_start = self.text.line_start(self.pos());
                    let pos = line_start + 2 + i + 1;
                    return Err(self.text.error_at(
                        pos,
                        "use two spaces between sentences\n(if this is not the end of a sentence, please report a bug)",
                    ));
                }
            }
            i += 1;
        }
        Ok(())
    }
}

impl Doc {
    fn new(info: Info, symbol: Option<String>) -> Self {
        Doc {
            store: vec![Section::new(info.clone(), SectionKind::Plain, None)],
            order: vec![0],
            info,
            symbol,
            args: Vec::new(),
            features: Vec::new(),
            sections: Vec::new(),
            returns: None,
            errors: None,
            since: None,
        }
    }

    pub fn body(&self) -> &Section {
        &self.store[0]
    }

    pub fn returns(&self) -> Option<&Section> {
        self.returns.map(|i| &self.store[i])
    }

    pub fn errors(&self) -> Option<&Section> {
        self.errors.map(|i| &self.store[i])
    }

    pub fn since(&self) -> Option<&Section> {
        self.since.map(|i| &self.store[i])
    }

    pub fn arg(&self, name: &str) -> Option<&Section> {
        self.args
            .iter()
            .map(|&i| &self.store[i])
            .find(|s| s.name.as_deref() == Some(name))
    }

    pub fn feature(&self, name: &str) -> Option<&Section> {
        self.features
            .iter()
            .map(|&i| &self.store[i])
            .find(|s| s.name.as_deref() == Some(name))
    }

    fn push(&mut self, section: Section) -> usize {
        self.store.push(section);
        let i = self.store.len() - 1;
        self.order.push(i);
        i
    }

    fn append_line(&mut self, line: &str) {
        let last = *self.order.last().unwrap_or(&0);
        let s = &mut self.store[last];
        s.text.push_str(line);
        s.text.push('\n');
    }

    fn ensure_untagged(&mut self, info: Info) {
        let kind = SectionKind::Plain;
        let last = *self.order.last().unwrap_or(&0);
        if self.store[last].kind == kind {
            let s = &mut self.store[last];
            if s.text.is_empty() {
                s.info = info;
            }
            s.text.push('\n');
            return;
        }
        let i = self.push(Section::new(info, kind, None));
        self.sections.push(i);
    }

    fn new_tagged(&mut self, info: Info, kind: SectionKind) -> Result<(), Diagnostic> {
        let slot = match kind {
            SectionKind::Returns => Some(self.returns),
            SectionKind::Errors => Some(self.errors),
            SectionKind::Since => Some(self.since),
            _ => None,
        };
        if let Some(Some(_)) = slot {
            return Err(Diagnostic::new(
                &info,
                format!("this block already has a '{}' section", kind.tag()),
            ));
        }
        let i = self.push(Section::new(info, kind, None));
        match kind {
            SectionKind::Returns => self.returns = Some(i),
            SectionKind::Errors => self.errors = Some(i),
            SectionKind::Since => self.since = Some(i),
            _ => {}
        }
        self.sections.push(i);
        Ok(())
    }

    fn new_description(&mut self, info: Info, name: &str, feature: bool) -> Result<(), Diagnostic> {
        if name.is_empty() {
            return Err(Diagnostic::new(
                &info,
                "'@:' needs a member or feature name between '@' and ':'",
            ));
        }
        let exists = if feature {
            self.feature(name).is_some()
        } else {
            self.arg(name).is_some()
        };
        if exists {
            return Err(Diagnostic::new(
                &info,
                format!("'{name}' is described twice"),
            ));
        }
        let kind = if feature {
            SectionKind::Feature
        } else {
            SectionKind::Member
        };
        let i = self.push(Section::new(info, kind, Some(name.to_string())));
        if feature {
            self.features.push(i);
        } else {
            self.args.push(i);
        }
        Ok(())
    }

    /// Ends the block: trims sections and insists tagged ones have text.
    fn end(&mut self) -> Result<(), Diagnostic> {
        for &i in &self.order {
            let s = &mut self.store[i];
            s.text = s.text.trim_matches('\n').to_string();
            if s.kind.text_required() && s.text.is_empty() {
                let what = match s.kind {
                    SectionKind::Member | SectionKind::Feature => {
                        format!("'@{}:'", s.name.as_deref().unwrap_or(""))
                    }
                    k => format!("'{}:'", k.tag()),
                };
                return Err(Diagnostic::new(
                    &s.info,
                    format!("{what} needs a description after it"),
                ));
            }
        }
        Ok(())
    }

    /// Parses one block; `lines` runs from the opening to the closing `##`.
    pub(crate) fn parse(
        text: &Text<'_>,
        lines: &[DocLine<'_>],
        opts: DocOptions,
    ) -> Result<Doc, Diagnostic> {
        let mut c = Lines {
            text,
            lines,
            idx: 0,
            opts,
            literal: false,
            literal_indent: 0,
        };
        if lines.first().map(|l| l.text) != Some("##") {
            return Err(
                c.error("the opening '##' of a documentation block must stand alone on its line")
            );
        }
        let info = c.info();
        let mut line = c.next()?;
        let mut doc;
        match line.as_deref() {
            Some(l) if l.starts_with('@') => {
                let Some(sym) = l.strip_suffix(':') else {
                    return Err(
                        c.error("the first line of definition documentation must be '@NAME:'")
                    );
                };
                let sym = &sym[1..];
                if sym.is_empty() {
                    return Err(c.error("a definition name is required after '@'"));
                }
                doc = Doc::new(info, Some(sym.to_string()));
                line = c.next()?;
                doc.parse_definition(&mut c, line)?;
            }
            _ => {
                doc = Doc::new(info, None);
                doc.ensure_untagged(c.info());
                while let Some(l) = line {
                    if let Some((name, _)) = at_name_colon(&l) {
                        return Err(c.error(format!(
                            "'@{name}:' describes a member, but this is free-form documentation (no '@NAME:' first line)"
                        )));
                    }
                    doc.append_line(&l);
                    line = c.next()?;
                }
            }
        }
        doc.end()?;
        Ok(doc)
    }

    fn parse_definition(
        &mut self,
        c: &mut Lines<'_, '_>,
        mut line: Option<String>,
    ) -> Result<(), Diagnostic> {
        // Member descriptions must come before any other section.
        let mut no_more_args = false;
        'outer: while let Some(mut l) = line.take() {
            while l.is_empty() {
                match c.next()? {
                    Some(n) => l = n,
                    None => break 'outer,
                }
            }
            if l == "Features:" {
                if !self.features.is_empty() {
                    return Err(c.error(
                        "a second 'Features:' line; describe all features under the first",
                    ));
                }
                line = c.next()?;
                while line.as_deref() == Some("") {
                    line = c.next()?;
                }
                while let Some((name, end)) = line.as_deref().and_then(at_name_colon) {
                    let l = line.take().unwrap_or_default();
                    self.new_description(c.info(), &name, true)?;
                    if end < l.len() {
                        self.append_line(&l[end..]);
                    }
                    line = self.indented(c)?;
                }
                if self.features.is_empty() {
                    return Err(c.error("'Features:' must be followed by '@feature:' descriptions"));
                }
                no_more_args = true;
            } else if let Some((name, _)) = at_name_colon(&l) {
                if no_more_args {
                    return Err(c.error(format!(
                        "'@{name}:' comes after a tagged section; describe members before other sections"
                    )));
                }
                line = Some(l);
                while let Some((name, end)) = line.as_deref().and_then(at_name_colon) {
                    let l = line.take().unwrap_or_default();
                    self.new_description(c.info(), &name, false)?;
                    if end < l.len() {
                        self.append_line(&l[end..]);
                    }
                    line = self.indented(c)?;
                }
                no_more_args = true;
            } else if let Some((tag, end)) = tagged_section(&l) {
                if tag.starts_with("Note") {
                    return Err(c.error(format!(
                        "'{tag}:' sections are no longer supported; use the rST '.. note::' or '.. admonition:: notes' directives instead"
                    )));
                }
                if tag.starts_with("Example") {
                    return Err(c.error(format!(
                        "'{tag}:' sections are no longer supported; use the '.. qmp-example::' directive instead"
                    )));
                }
                let kind = match tag {
                    "Returns" => SectionKind::Returns,
                    "Errors" => SectionKind::Errors,
                    "Since" => SectionKind::Since,
                    _ => SectionKind::Todo,
                };
                self.new_tagged(c.info(), kind)?;
                if end < l.len() {
                    self.append_line(&l[end..]);
                }
                line = self.indented(c)?;
                no_more_args = true;
            } else {
                self.ensure_untagged(c.info());
                self.append_line(&l);
                // The rest of the paragraph, up to a blank line.
                loop {
                    match c.next()? {
                        None => {
                            line = None;
                            break;
                        }
                        Some(n) if n.is_empty() => {
                            line = Some(n);
                            break;
                        }
                        Some(n) => self.append_line(&n),
                    }
                }
            }
        }
        Ok(())
    }

    /// The continuation lines of a description or tagged section: blank
    /// lines, then lines indented at least as much as the first.
    fn indented(&mut self, c: &mut Lines<'_, '_>) -> Result<Option<String>, Diagnostic> {
        let mut line = c.next()?;
        while line.as_deref() == Some("") {
            self.append_line("");
            line = c.next()?;
        }
        let Some(first) = line else { return Ok(None) };
        let indent = leading_ws(&first);
        if indent == 0 {
            return Ok(Some(first));
        }
        self.append_line(&first);
        let mut prev_line_blank = false;
        loop {
            let Some(l) = c.next()? else { return Ok(None) };
            if at_name_colon(&l).is_some() {
                return Ok(Some(l));
            }
            let cur = leading_ws(&l);
            if !l.is_empty() && cur < indent {
                if prev_line_blank {
                    return Ok(Some(l));
                }
                return Err(c.error(format!(
                    "this line is indented less than the one before (expected at least {indent} spaces)"
                )));
            }
            self.append_line(&l);
            // QEMU sets this after any continuation line, blank or not.
            prev_line_blank = true;
        }
    }

    /// Records that the definition has a member called `name` (`role` is
    /// "member", "value", "branch", ...). Undocumented members are an error
    /// unless the pragma exempts the definition.
    pub(crate) fn connect_member(
        &mut self,
        name: &str,
        role: &str,
        member_info: &Info,
        exempt: bool,
    ) -> Result<(), Diagnostic> {
        if let Some(&i) = self
            .args
            .iter()
            .find(|&&i| self.store[i].name.as_deref() == Some(name))
        {
            self.store[i].connected = true;
            return Ok(());
        }
        if !exempt {
            return Err(Diagnostic::new(
                member_info,
                format!("{role} '{name}' has no description in the documentation"),
            ));
        }
        let mut section = Section::new(
            self.info.clone(),
            SectionKind::Member,
            Some(name.to_string()),
        );
        section.connected = true;
        self.store.push(section);
        let i = self.store.len() - 1;
        self.args.push(i);
        let mut at = 1;
        while at < self.order.len() && self.store[self.order[at]].kind == SectionKind::Member {
            at += 1;
        }
        self.order.insert(at.min(self.order.len()), i);
        Ok(())
    }

    pub(crate) fn connect_feature(
        &mut self,
        name: &str,
        feature_info: &Info,
    ) -> Result<(), Diagnostic> {
        match self
            .features
            .iter()
            .find(|&&i| self.store[i].name.as_deref() == Some(name))
        {
            Some(&i) => {
                self.store[i].connected = true;
                Ok(())
            }
            None => Err(Diagnostic::new(
                feature_info,
                format!("feature '{name}' has no description in the documentation"),
            )),
        }
    }

    /// Sections that only make sense for some kinds of definition.
    pub(crate) fn check_expr(&self, is_command: bool, has_returns: bool) -> Result<(), Diagnostic> {
        if is_command {
            if let Some(r) = self.returns()
                && !has_returns
            {
                return Err(Diagnostic::new(
                    &r.info,
                    "'Returns' section, but the command has no 'returns'",
                ));
            }
        } else {
            if let Some(r) = self.returns() {
                return Err(Diagnostic::new(
                    &r.info,
                    "'Returns' sections belong to commands only",
                ));
            }
            if let Some(e) = self.errors() {
                return Err(Diagnostic::new(
                    &e.info,
                    "'Errors' sections belong to commands only",
                ));
            }
        }
        Ok(())
    }

    /// Descriptions of members or features the definition does not have.
    pub(crate) fn check(&self) -> Result<(), Diagnostic> {
        for (list, what) in [(&self.args, "member"), (&self.features, "feature")] {
            let bogus: Vec<&Section> = list
                .iter()
                .map(|&i| &self.store[i])
                .filter(|s| !s.connected)
                .collect();
            if let Some(first) = bogus.first() {
                let names: Vec<String> = bogus
                    .iter()
                    .map(|s| format!("'{}'", s.name.as_deref().unwrap_or("")))
                    .collect();
                let msg = if bogus.len() == 1 {
                    format!("documented {what} {} does not exist", names[0])
                } else {
                    format!("documented {what}s {} do not exist", names.join(", "))
                };
                return Err(Diagnostic::new(&first.info, msg));
            }
        }
        Ok(())
    }
}
