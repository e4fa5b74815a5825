//! Building the model from checked expressions, then the semantic checks:
//! type resolution, bases and branches, member clashes, alternate
//! ambiguity, documentation coverage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, SchemaError};
use crate::doc::{Doc, DocOptions};
use crate::expr::check_exprs;
use crate::model::*;
use crate::names::c_name;
use crate::parser::{Expr, Pragma, parse_schema};
use crate::source::{Info, dirname, relative};
use crate::value::{Dict, Value};

/// Options for loading a schema.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Apply QEMU 10.1+ documentation typography rules (line width,
    /// sentence spacing). Off by default so that older QEMU schemas load.
    pub doc_style: bool,
}

/// A parsed and fully checked schema.
#[derive(Debug)]
pub struct Schema {
    pub entities: Vec<Entity>,
    pub by_name: HashMap<String, EntityId>,
    pub modules: Vec<Module>,
    pub docs: Vec<Doc>,
    pub pragma: Pragma,
    files: Vec<PathBuf>,
}

pub const BUILTIN_MODULE: &str = "./builtin";

/// An error that has already been reported elsewhere (a dependency failed).
struct Silent;

enum Fail {
    Report(Diagnostic),
    Silent,
}

impl From<Diagnostic> for Fail {
    fn from(d: Diagnostic) -> Self {
        Fail::Report(d)
    }
}

impl From<Silent> for Fail {
    fn from(_: Silent) -> Self {
        Fail::Silent
    }
}

type Checked<T = ()> = Result<T, Fail>;

fn err(info: Option<&Info>, msg: impl Into<String>) -> Fail {
    match info {
        Some(i) => Fail::Report(Diagnostic::new(i, msg)),
        None => Fail::Report(Diagnostic::bare(msg)),
    }
}

struct Builder {
    schema: Schema,
    schema_dir: String,
    feature_names: Vec<String>,
}

impl Schema {
    /// Reads, parses and checks the schema whose top file is `path`.
    pub fn load(path: impl AsRef<Path>, opts: &CheckOptions) -> Result<Schema, SchemaError> {
        let name = path.as_ref().to_string_lossy().into_owned();
        let parsed = parse_schema(
            &name,
            DocOptions {
                style: opts.doc_style,
            },
        )
        .map_err(|(d, files)| SchemaError {
            files,
            diagnostics: vec![d],
        })?;
        let files = parsed.files.clone();
        let fail = |diagnostics: Vec<Diagnostic>| SchemaError {
            diagnostics,
            files: files.clone(),
        };
        let mut exprs = parsed.exprs;
        let diags = check_exprs(&mut exprs, &parsed.docs, &parsed.pragma);
        if !diags.is_empty() {
            return Err(fail(diags));
        }
        let mut b = Builder {
            schema: Schema {
                entities: Vec::new(),
                by_name: HashMap::new(),
                modules: Vec::new(),
                docs: parsed.docs,
                pragma: parsed.pragma,
                files: parsed.files,
            },
            schema_dir: dirname(&name).to_string(),
            feature_names: vec!["deprecated".into(), "unstable".into()],
        };
        b.make_module(BUILTIN_MODULE);
        b.make_module(&name);
        b.def_predefineds();
        let mut diags = Vec::new();
        for expr in &exprs {
            if let Err(d) = b.def_expr(expr) {
                diags.push(d);
            }
        }
        if !diags.is_empty() {
            return Err(fail(diags));
        }
        let diags = b.check();
        if !diags.is_empty() {
            return Err(fail(diags));
        }
        Ok(b.schema)
    }

    /// Every file read, top file first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn lookup(&self, name: &str) -> Option<&Entity> {
        self.by_name.get(name).map(|&i| &self.entities[i])
    }

    pub fn entity(&self, id: EntityId) -> &Entity {
        &self.entities[id]
    }

    /// Entities in definition order, skipping includes.
    pub fn definitions(&self) -> impl Iterator<Item = (EntityId, &Entity)> {
        self.entities
            .iter()
            .enumerate()
            .filter(|(_, e)| !matches!(e.kind, EntityKind::Include { .. }))
    }

    /// The element type of an array, the type itself otherwise.
    pub fn type_name(&self, id: Option<EntityId>) -> String {
        id.map_or_else(|| "None".to_string(), |i| self.entities[i].name.clone())
    }
}

impl Builder {
    fn module_name(&self, fname: &str) -> String {
        if fname.starts_with("./") {
            return fname.to_string();
        }
        relative(Path::new(fname), Path::new(&self.schema_dir))
    }

    fn make_module(&mut self, fname: &str) -> usize {
        let name = self.module_name(fname);
        if let Some(i) = self.schema.modules.iter().position(|m| m.name == name) {
            return i;
        }
        self.schema.modules.push(Module {
            name,
            entities: Vec::new(),
        });
        self.schema.modules.len() - 1
    }

    fn add(&mut self, e: Entity) -> Result<EntityId, Diagnostic> {
        let id = self.schema.entities.len();
        let name = e.name.clone();
        let is_include = matches!(e.kind, EntityKind::Include { .. });
        let info = e.info.clone();
        self.schema.entities.push(e);
        if is_include {
            return Ok(id);
        }
        if let Some(&other) = self.schema.by_name.get(&name) {
            let other = &self.schema.entities[other];
            let info = info.unwrap_or_else(unreachable_info);
            return Err(match &other.info {
                Some(prev) => Diagnostic::new(
                    &info,
                    format!(
                        "'{name}' is already defined\n{}: previous definition",
                        prev.loc()
                    ),
                ),
                None => Diagnostic::new(
                    &info,
                    format!("{} is already defined (it is built in)", other.describe()),
                ),
            });
        }
        self.schema.by_name.insert(name, id);
        Ok(id)
    }

    fn entity(name: &str, info: Option<Info>, kind: EntityKind) -> Entity {
        Entity {
            name: name.to_string(),
            info,
            doc: None,
            ifcond: IfCond::default(),
            features: Vec::new(),
            kind,
            module: 0,
        }
    }

    fn def_predefineds(&mut self) {
        use JsonType::*;
        let builtins = [
            ("str", String),
            ("number", Number),
            ("int", Int),
            ("int8", Int),
            ("int16", Int),
            ("int32", Int),
            ("int64", Int),
            ("uint8", Int),
            ("uint16", Int),
            ("uint32", Int),
            ("uint64", Int),
            ("size", Int),
            ("bool", Boolean),
            ("any", Value),
            ("null", Null),
        ];
        for (name, json) in builtins {
            let _ = self.add(Self::entity(name, None, EntityKind::Builtin { json }));
            let _ = self.make_array(name, None);
        }
        let _ = self.add(Self::entity(
            "q_empty",
            None,
            EntityKind::Object(ObjectType {
                base_name: None,
                base: None,
                local_members: Vec::new(),
                members: Vec::new(),
                branches: None,
                state: CheckState::Unchecked,
            }),
        ));
        let members = [
            "none", "qnull", "qnum", "qstring", "qdict", "qlist", "qbool",
        ]
        .iter()
        .map(|n| EnumMember {
            name: n.to_string(),
            info: None,
            ifcond: IfCond::default(),
            features: Vec::new(),
        })
        .collect();
        let _ = self.add(Self::entity(
            "QType",
            None,
            EntityKind::Enum {
                members,
                prefix: None,
            },
        ));
    }

    fn make_array(&mut self, element: &str, info: Option<&Info>) -> Result<String, Diagnostic> {
        let name = format!("{element}List");
        if !self
            .schema
            .by_name
            .get(&name)
            .is_some_and(|&i| self.schema.entities[i].is_type())
        {
            self.add(Self::entity(
                &name,
                info.cloned(),
                EntityKind::Array {
                    element_name: element.to_string(),
                    element: None,
                },
            ))?;
        }
        Ok(name)
    }

    fn make_features(&mut self, owner: &Dict, info: &Info) -> Result<Vec<Feature>, Diagnostic> {
        let Some(Value::List(items)) = owner.get("features") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in items {
            let Some(d) = item.as_dict() else { continue };
            let name = d.get_str("name").unwrap_or_default().to_string();
            if !self.feature_names.contains(&name) {
                if self.feature_names.len() >= 64 {
                    return Err(Diagnostic::new(
                        info,
                        format!(
                            "feature '{name}' would be feature number 65: a schema may define at most 64 features (including 'deprecated' and 'unstable')"
                        ),
                    ));
                }
                self.feature_names.push(name.clone());
            }
            out.push(Feature {
                name,
                info: Some(info.clone()),
                ifcond: IfCond(d.get("if").cloned()),
            });
        }
        Ok(out)
    }

    fn make_member(
        &mut self,
        key: &str,
        value: &Dict,
        info: &Info,
        defined_in: &str,
    ) -> Result<Member, Diagnostic> {
        let (name, optional) = match key.strip_prefix('*') {
            Some(n) => (n, true),
            None => (key, false),
        };
        let type_name = self.type_ref(value.get("type"), info)?;
        Ok(Member {
            name: name.to_string(),
            info: Some(info.clone()),
            type_name,
            ty: None,
            optional,
            ifcond: IfCond(value.get("if").cloned()),
            features: self.make_features(value, info)?,
            defined_in: defined_in.to_string(),
            role: "member",
        })
    }

    /// `'Type'` or `['Type']` (making the array type).
    fn type_ref(&mut self, v: Option<&Value>, info: &Info) -> Result<String, Diagnostic> {
        match v {
            Some(Value::List(items)) => {
                let elem = items
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.make_array(&elem, Some(info))
            }
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => Ok(String::new()),
        }
    }

    fn make_members(
        &mut self,
        data: Option<&Value>,
        info: &Info,
        defined_in: &str,
    ) -> Result<Vec<Member>, Diagnostic> {
        let Some(Value::Dict(d)) = data else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in d.iter() {
            let empty = Dict::default();
            out.push(self.make_member(k, v.as_dict().unwrap_or(&empty), info, defined_in)?);
        }
        Ok(out)
    }

    fn make_implicit_object(
        &mut self,
        name: &str,
        info: &Info,
        ifcond: &IfCond,
        role: &str,
        members: Vec<Member>,
    ) -> Result<Option<String>, Diagnostic> {
        if members.is_empty() {
            return Ok(None);
        }
        let name = format!("q_obj_{name}-{role}");
        if !self.schema.by_name.contains_key(&name) {
            let mut e = Self::entity(
                &name,
                Some(info.clone()),
                EntityKind::Object(ObjectType {
                    base_name: None,
                    base: None,
                    local_members: members,
                    members: Vec::new(),
                    branches: None,
                    state: CheckState::Unchecked,
                }),
            );
            e.ifcond = ifcond.clone();
            self.add(e)?;
        }
        Ok(Some(name))
    }

    /// Union and alternate branches: members named exactly by their key.
    fn make_variants(
        &mut self,
        data: Option<&Value>,
        info: &Info,
        defined_in: &str,
    ) -> Result<Vec<Member>, Diagnostic> {
        let mut out = self.make_members(data, info, defined_in)?;
        let keys = data
            .and_then(Value::as_dict)
            .map(|d| d.keys().collect::<Vec<_>>())
            .unwrap_or_default();
        for (m, key) in out.iter_mut().zip(keys) {
            m.name = key.to_string();
            m.optional = false;
            m.role = "branch";
        }
        Ok(out)
    }

    fn def_expr(&mut self, expr: &Expr) -> Result<(), Diagnostic> {
        let d = &expr.dict;
        let info = &expr.info;
        if let Some(incl) = &expr.include {
            let module = self.make_module(incl);
            let module = self.schema.modules[module].name.clone();
            self.add(Self::entity(
                "",
                Some(info.clone()),
                EntityKind::Include { module },
            ))?;
            return Ok(());
        }
        let ifcond = IfCond(d.get("if").cloned());
        let meta = info.defn_meta().unwrap_or_default().to_string();
        let name = d.get_str(&meta).unwrap_or_default().to_string();
        let features = self.make_features(d, info)?;
        let kind = match meta.as_str() {
            "enum" => {
                let mut members = Vec::new();
                for m in d.get("data").and_then(Value::as_list).unwrap_or(&[]) {
                    let Some(m) = m.as_dict() else { continue };
                    members.push(EnumMember {
                        name: m.get_str("name").unwrap_or_default().to_string(),
                        info: Some(info.clone()),
                        ifcond: IfCond(m.get("if").cloned()),
                        features: self.make_features(m, info)?,
                    });
                }
                EntityKind::Enum {
                    members,
                    prefix: d.get_str("prefix").map(str::to_string),
                }
            }
            "struct" => {
                let local_members = self.make_members(d.get("data"), info, &name)?;
                EntityKind::Object(ObjectType {
                    base_name: d.get_str("base").map(str::to_string),
                    base: None,
                    local_members,
                    members: Vec::new(),
                    branches: None,
                    state: CheckState::Unchecked,
                })
            }
            "union" => {
                let base_name = match d.get("base") {
                    Some(Value::Dict(_)) => {
                        let implicit = format!("q_obj_{name}-base");
                        let members = self.make_members(d.get("base"), info, &implicit)?;
                        self.make_implicit_object(&name, info, &ifcond, "base", members)?
                    }
                    Some(Value::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                let variants = self.make_variants(d.get("data"), info, &name)?;
                EntityKind::Object(ObjectType {
                    base_name,
                    base: None,
                    local_members: Vec::new(),
                    members: Vec::new(),
                    branches: Some(Variants {
                        info: Some(info.clone()),
                        tag_name: d.get_str("discriminator").unwrap_or_default().to_string(),
                        tag_member: None,
                        variants,
                    }),
                    state: CheckState::Unchecked,
                })
            }
            "alternate" => {
                let variants = self.make_variants(d.get("data"), info, &name)?;
                let tag = Member {
                    name: "type".into(),
                    info: Some(info.clone()),
                    type_name: "QType".into(),
                    ty: None,
                    optional: false,
                    ifcond: IfCond::default(),
                    features: Vec::new(),
                    defined_in: name.clone(),
                    role: "member",
                };
                EntityKind::Alternate(Variants {
                    info: Some(info.clone()),
                    tag_name: "type".into(),
                    tag_member: Some(tag),
                    variants,
                })
            }
            "command" | "event" => {
                let arg_type_name = match d.get("data") {
                    Some(Value::Dict(_)) => {
                        let implicit = format!("q_obj_{name}-arg");
                        let members = self.make_members(d.get("data"), info, &implicit)?;
                        self.make_implicit_object(&name, info, &ifcond, "arg", members)?
                    }
                    Some(Value::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                let boxed = d.get_bool("boxed").unwrap_or(false);
                if meta == "command" {
                    let ret_type_name = match d.get("returns") {
                        None => None,
                        v => Some(self.type_ref(v, info)?),
                    };
                    EntityKind::Command(Command {
                        arg_type_name,
                        arg_type: None,
                        ret_type_name,
                        ret_type: None,
                        generate: d.get_bool("gen").unwrap_or(true),
                        success_response: d.get_bool("success-response").unwrap_or(true),
                        boxed,
                        allow_oob: d.get_bool("allow-oob").unwrap_or(false),
                        allow_preconfig: d.get_bool("allow-preconfig").unwrap_or(false),
                        coroutine: d.get_bool("coroutine").unwrap_or(false),
                    })
                } else {
                    EntityKind::Event(Event {
                        arg_type_name,
                        arg_type: None,
                        boxed,
                    })
                }
            }
            _ => return Ok(()),
        };
        let mut e = Self::entity(&name, Some(info.clone()), kind);
        e.doc = expr.doc;
        e.ifcond = ifcond;
        e.features = features;
        self.add(e)?;
        Ok(())
    }

    // ---- checking -------------------------------------------------------

    fn check(&mut self) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        for id in 0..self.schema.entities.len() {
            match self.check_entity(id) {
                Ok(()) => {
                    if let Err(d) = self.connect_doc(id) {
                        diags.push(d);
                    }
                }
                Err(Fail::Report(d)) => diags.push(d),
                // Reported with the entity it depends on.
                Err(Fail::Silent) => {}
            }
        }
        if !diags.is_empty() {
            return diags;
        }
        self.assign_modules();
        for doc in &self.schema.docs {
            if let Err(d) = doc.check() {
                diags.push(d);
            }
        }
        diags
    }

    fn resolve(&self, name: &str, info: Option<&Info>, what: &str) -> Checked<EntityId> {
        match self.schema.by_name.get(name) {
            Some(&id) if self.schema.entities[id].is_type() => Ok(id),
            _ => Err(err(info, format!("{what} uses unknown type '{name}'"))),
        }
    }

    fn check_features_clash(
        &self,
        info: Option<&Info>,
        features: &[Feature],
        owner: &str,
    ) -> Checked {
        let mut seen: HashMap<String, &Feature> = HashMap::new();
        for f in features {
            let c = c_name(&f.name);
            if let Some(prev) = seen.get(&c) {
                let who = |n: &str| {
                    if info.and_then(Info::defn_name) == Some(owner) {
                        format!("feature '{n}'")
                    } else {
                        format!("feature '{n}' of type '{owner}'")
                    }
                };
                return Err(err(
                    info,
                    format!("{} collides with {}", who(&f.name), who(&prev.name)),
                ));
            }
            seen.insert(c, f);
        }
        Ok(())
    }

    fn check_definition(&self, id: EntityId) -> Checked {
        let e = &self.schema.entities[id];
        self.check_features_clash(e.info.as_ref(), &e.features, &e.name)?;
        if e.is_type() {
            for f in &e.features {
                if f.is_special() {
                    return Err(err(
                        e.info.as_ref(),
                        format!(
                            "feature '{}' is meant for commands, events and members; types cannot carry it",
                            f.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_entity(&mut self, id: EntityId) -> Checked {
        let e = &self.schema.entities[id];
        match &e.kind {
            EntityKind::Include { .. } | EntityKind::Builtin { .. } => Ok(()),
            EntityKind::Enum { members, .. } => {
                self.check_definition(id)?;
                let mut seen: Vec<(String, String)> = Vec::new();
                for m in members {
                    let c = c_name(&m.name);
                    if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == c) {
                        return Err(err(
                            e.info.as_ref(),
                            format!(
                                "value '{}' collides with value '{prev}' (they map to the same C name)",
                                m.name
                            ),
                        ));
                    }
                    seen.push((c, m.name.clone()));
                }
                Ok(())
            }
            EntityKind::Array { element_name, .. } => {
                let what = e
                    .info
                    .as_ref()
                    .and_then(Info::defn_meta)
                    .unwrap_or("array")
                    .to_string();
                let elem = self.resolve(element_name, e.info.as_ref(), &what)?;
                if let EntityKind::Array { element, .. } = &mut self.schema.entities[id].kind {
                    *element = Some(elem);
                }
                self.check_definition(id)
            }
            EntityKind::Object(_) => self.check_object(id),
            EntityKind::Alternate(_) => self.check_alternate(id),
            EntityKind::Command(_) => self.check_command(id),
            EntityKind::Event(_) => self.check_event(id),
        }
    }

    fn object(&self, id: EntityId) -> &ObjectType {
        match &self.schema.entities[id].kind {
            EntityKind::Object(o) => o,
            _ => unreachable_object(),
        }
    }

    fn object_mut(&mut self, id: EntityId) -> &mut ObjectType {
        match &mut self.schema.entities[id].kind {
            EntityKind::Object(o) => o,
            _ => unreachable_object(),
        }
    }

    /// Records `m` in `seen` (keyed by C name), failing on a clash.
    fn check_clash(m: &Member, info: Option<&Info>, seen: &mut Vec<(String, Member)>) -> Checked {
        let c = c_name(&m.name);
        if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == c) {
            return Err(err(
                info,
                format!("{} collides with {}", m.describe(info), prev.describe(info)),
            ));
        }
        seen.push((c, m.clone()));
        Ok(())
    }

    /// Checks that members of object `id` (and its branches) add no clash
    /// to `seen`, reporting on behalf of `info`.
    fn object_check_clash(
        &self,
        id: EntityId,
        info: Option<&Info>,
        seen: &mut Vec<(String, Member)>,
    ) -> Checked {
        let o = self.object(id);
        for m in &o.members {
            Self::check_clash(m, info, seen)?;
        }
        if let Some(b) = &o.branches {
            self.branches_check_clash(b, info, seen)?;
        }
        Ok(())
    }

    fn branches_check_clash(
        &self,
        b: &Variants,
        info: Option<&Info>,
        seen: &[(String, Member)],
    ) -> Checked {
        for v in &b.variants {
            let Some(ty) = v.ty else { continue };
            let mut local = seen.to_vec();
            self.object_check_clash(ty, info, &mut local)?;
        }
        Ok(())
    }

    fn check_member(&mut self, m: &mut Member) -> Checked {
        let what = m.describe(m.info.as_ref());
        m.ty = Some(self.resolve(&m.type_name, m.info.as_ref(), &what)?);
        self.check_features_clash(m.info.as_ref(), &m.features, &m.name)?;
        Ok(())
    }

    fn check_object(&mut self, id: EntityId) -> Checked {
        match self.object(id).state {
            CheckState::Done => return Ok(()),
            CheckState::Failed => return Err(Silent.into()),
            CheckState::Checking => {
                let e = &self.schema.entities[id];
                return Err(err(
                    e.info.as_ref(),
                    format!(
                        "object {} contains itself (through its base or a branch)",
                        e.name
                    ),
                ));
            }
            CheckState::Unchecked => {}
        }
        self.object_mut(id).state = CheckState::Checking;
        let r = self.check_object_inner(id);
        self.object_mut(id).state = if r.is_ok() {
            CheckState::Done
        } else {
            CheckState::Failed
        };
        r
    }

    fn check_object_inner(&mut self, id: EntityId) -> Checked {
        self.check_definition(id)?;
        let info = self.schema.entities[id].info.clone();
        let info = info.as_ref();
        let mut seen: Vec<(String, Member)> = Vec::new();
        if let Some(base_name) = self.object(id).base_name.clone() {
            let base = self.resolve(&base_name, info, "'base'")?;
            let b = &self.schema.entities[base];
            let ok = b.as_object().is_some_and(|o| o.branches.is_none());
            if !ok {
                return Err(err(
                    info,
                    format!(
                        "'base' must name a struct type, and {} isn't one",
                        b.describe()
                    ),
                ));
            }
            self.check_object(base)?;
            self.object_check_clash(base, info, &mut seen)?;
            self.object_mut(id).base = Some(base);
        }
        let mut locals = std::mem::take(&mut self.object_mut(id).local_members);
        let mut r = Ok(());
        for m in locals.iter_mut() {
            r = self
                .check_member(m)
                .and_then(|_| Self::check_clash(m, info, &mut seen));
            if r.is_err() {
                break;
            }
        }
        self.object_mut(id).local_members = locals;
        r?;
        let members: Vec<Member> = seen.iter().map(|(_, m)| m.clone()).collect();
        if let Some(mut branches) = self.object_mut(id).branches.take() {
            let r = self
                .check_branches(&mut branches, &seen)
                .and_then(|_| self.branches_check_clash(&branches, info, &seen));
            self.object_mut(id).branches = Some(branches);
            r?;
        }
        self.object_mut(id).members = members;
        Ok(())
    }

    fn check_branches(&mut self, b: &mut Variants, seen: &[(String, Member)]) -> Checked {
        let info = b.info.clone();
        let info = info.as_ref();
        let tag = seen
            .iter()
            .find(|(k, _)| *k == c_name(&b.tag_name))
            .map(|(_, m)| m.clone());
        let Some(tag) = tag.filter(|t| t.name == b.tag_name) else {
            return Err(err(
                info,
                format!("discriminator '{}' is not a member of 'base'", b.tag_name),
            ));
        };
        let base_is_implicit = self
            .schema
            .by_name
            .get(&tag.defined_in)
            .is_none_or(|&i| self.schema.entities[i].is_implicit());
        let base = if base_is_implicit {
            "'base'".to_string()
        } else {
            format!("base type '{}'", tag.defined_in)
        };
        let tag_ty = tag.ty.map(|t| &self.schema.entities[t]);
        let Some(tag_ty) = tag_ty.filter(|t| matches!(t.kind, EntityKind::Enum { .. })) else {
            return Err(err(
                info,
                format!(
                    "discriminator member '{}' of {base} must be of an enum type",
                    b.tag_name
                ),
            ));
        };
        if tag.optional {
            return Err(err(
                info,
                format!(
                    "discriminator member '{}' of {base} must not be optional",
                    b.tag_name
                ),
            ));
        }
        if tag.ifcond.is_present() {
            return Err(err(
                info,
                format!(
                    "discriminator member '{}' of {base} must not be conditional",
                    b.tag_name
                ),
            ));
        }
        let EntityKind::Enum {
            members: values, ..
        } = &tag_ty.kind
        else {
            return Err(Silent.into());
        };
        let values = values.clone();
        let tag_desc = tag_ty.describe();
        // Values without a branch get the empty object.
        for v in &values {
            if !b.variants.iter().any(|x| x.name == v.name) {
                b.variants.push(Member {
                    name: v.name.clone(),
                    info: info.cloned(),
                    type_name: "q_empty".into(),
                    ty: None,
                    optional: false,
                    ifcond: v.ifcond.clone(),
                    features: Vec::new(),
                    defined_in: tag.defined_in.clone(),
                    role: "branch",
                });
            }
        }
        if b.variants.is_empty() {
            return Err(err(
                info,
                "union has no branches (its discriminator enum has no values)",
            ));
        }
        b.tag_member = Some(tag);
        for v in b.variants.iter_mut() {
            self.check_member(v)?;
            if !values.iter().any(|x| x.name == v.name) {
                return Err(err(
                    info,
                    format!("branch '{}' is not a value of {tag_desc}", v.name),
                ));
            }
            let ty = v.ty.unwrap_or_default();
            if !matches!(self.schema.entities[ty].kind, EntityKind::Object(_)) {
                return Err(err(
                    info,
                    format!(
                        "{} cannot use {}: union branches must be object types",
                        v.describe(info),
                        self.schema.entities[ty].describe()
                    ),
                ));
            }
            self.check_object(ty)?;
        }
        Ok(())
    }

    fn alternate_qtype(&self, ty: EntityId) -> Option<&'static str> {
        let e = &self.schema.entities[ty];
        match &e.kind {
            EntityKind::Builtin { json } => match json {
                JsonType::Null => Some("QTYPE_QNULL"),
                JsonType::String => Some("QTYPE_QSTRING"),
                JsonType::Number | JsonType::Int => Some("QTYPE_QNUM"),
                JsonType::Boolean => Some("QTYPE_QBOOL"),
                JsonType::Value => None,
            },
            EntityKind::Enum { .. } => Some("QTYPE_QSTRING"),
            EntityKind::Array { .. } => Some("QTYPE_QLIST"),
            EntityKind::Object(_) => Some("QTYPE_QDICT"),
            _ => None,
        }
    }

    fn check_alternate(&mut self, id: EntityId) -> Checked {
        self.check_definition(id)?;
        let info = self.schema.entities[id].info.clone();
        let info = info.as_ref();
        let EntityKind::Alternate(mut alts) = self.schema.entities[id].kind.clone() else {
            return Ok(());
        };
        if let Some(tag) = alts.tag_member.as_mut() {
            self.check_member(tag)?;
        }
        for v in alts.variants.iter_mut() {
            self.check_member(v)?;
        }
        let mut seen = Vec::new();
        let mut types_seen: Vec<(&'static str, String)> = Vec::new();
        for v in &alts.variants {
            Self::check_clash(v, info, &mut seen)?;
            let ty = v.ty.unwrap_or_default();
            let Some(qtype) = self.alternate_qtype(ty) else {
                return Err(err(
                    info,
                    format!(
                        "{} cannot use {}: alternate branches must be distinguishable by JSON type",
                        v.describe(info),
                        self.schema.entities[ty].describe()
                    ),
                ));
            };
            let mut conflicting = vec![qtype];
            if qtype == "QTYPE_QSTRING" {
                if let EntityKind::Enum { members, .. } = &self.schema.entities[ty].kind {
                    for m in members {
                        if m.name == "on" || m.name == "off" {
                            conflicting.push("QTYPE_QBOOL");
                        }
                        if m.name.starts_with(|c: char| {
                            c == '-' || c == '+' || c == '.' || c.is_ascii_digit()
                        }) {
                            conflicting.push("QTYPE_QNUM");
                        }
                    }
                } else {
                    conflicting.push("QTYPE_QNUM");
                    conflicting.push("QTYPE_QBOOL");
                }
            }
            for qt in conflicting {
                if let Some((_, prev)) = types_seen.iter().find(|(t, _)| *t == qt) {
                    return Err(err(
                        info,
                        format!(
                            "{} can't be told apart from branch '{prev}' in JSON input",
                            v.describe(info)
                        ),
                    ));
                }
                types_seen.push((qt, v.name.clone()));
            }
        }
        self.schema.entities[id].kind = EntityKind::Alternate(alts);
        Ok(())
    }

    fn check_args(
        &mut self,
        id: EntityId,
        name: Option<String>,
        boxed: bool,
        what: &str,
    ) -> Checked<Option<EntityId>> {
        let Some(name) = name else { return Ok(None) };
        let info = self.schema.entities[id].info.clone();
        let info = info.as_ref();
        let arg = self.resolve(&name, info, &format!("{what}'s 'data'"))?;
        let a = &self.schema.entities[arg];
        let Some(o) = a.as_object() else {
            return Err(err(
                info,
                format!(
                    "{what}'s 'data' cannot take {}: it must be an object type",
                    a.describe()
                ),
            ));
        };
        if o.branches.is_some() && !boxed {
            return Err(err(
                info,
                format!(
                    "{what}'s 'data' can take {} only with 'boxed': true",
                    a.describe()
                ),
            ));
        }
        self.check_object(arg)?;
        let conditional = self
            .object(arg)
            .members
            .iter()
            .any(|m| m.ifcond.is_present());
        if conditional && !boxed {
            return Err(err(
                info,
                format!("{what} arguments with 'if' conditions require 'boxed': true"),
            ));
        }
        Ok(Some(arg))
    }

    fn check_command(&mut self, id: EntityId) -> Checked {
        self.check_definition(id)?;
        let e = &self.schema.entities[id];
        let EntityKind::Command(c) = e.kind.clone() else {
            return Ok(());
        };
        let name = e.name.clone();
        let info = e.info.clone();
        let arg = self.check_args(id, c.arg_type_name.clone(), c.boxed, "command")?;
        let mut ret = None;
        if let Some(r) = &c.ret_type_name {
            let rid = self.resolve(r, info.as_ref(), "command's 'returns'")?;
            ret = Some(rid);
            if !self
                .schema
                .pragma
                .command_returns_exceptions
                .contains(&name)
            {
                let mut t = rid;
                if let EntityKind::Array { element, .. } = &self.schema.entities[rid].kind {
                    // An unresolved element was reported with the array.
                    t = element.ok_or(Silent)?;
                }
                if !matches!(self.schema.entities[t].kind, EntityKind::Object(_)) {
                    return Err(err(
                        info.as_ref(),
                        format!(
                            "command's 'returns' cannot take {}: commands return objects or arrays of objects (see pragma 'command-returns-exceptions')",
                            self.schema.entities[rid].describe()
                        ),
                    ));
                }
            }
        }
        if let EntityKind::Command(c) = &mut self.schema.entities[id].kind {
            c.arg_type = arg;
            c.ret_type = ret;
        }
        Ok(())
    }

    fn check_event(&mut self, id: EntityId) -> Checked {
        self.check_definition(id)?;
        let EntityKind::Event(ev) = self.schema.entities[id].kind.clone() else {
            return Ok(());
        };
        let arg = self.check_args(id, ev.arg_type_name.clone(), ev.boxed, "event")?;
        if let EntityKind::Event(ev) = &mut self.schema.entities[id].kind {
            ev.arg_type = arg;
        }
        Ok(())
    }

    // ---- documentation --------------------------------------------------

    fn connect_doc(&mut self, id: EntityId) -> Result<(), Diagnostic> {
        let e = &self.schema.entities[id];
        let Some(d) = e.doc else { return Ok(()) };
        self.connect_doc_to(id, d)
    }

    fn connect_doc_to(&mut self, id: EntityId, d: usize) -> Result<(), Diagnostic> {
        let Schema {
            entities,
            docs,
            pragma,
            ..
        } = &mut self.schema;
        let e = &entities[id];
        let doc = &mut docs[d];
        let exempt = doc
            .symbol
            .as_ref()
            .is_some_and(|s| pragma.documentation_exceptions.contains(s));
        for f in &e.features {
            doc.connect_feature(&f.name, f.info.as_ref().unwrap_or(&e_info(e)))?;
        }
        let connect_members = |doc: &mut Doc, members: &[Member]| -> Result<(), Diagnostic> {
            for m in members {
                let info = m.info.clone().unwrap_or_else(unreachable_info);
                doc.connect_member(&m.name, m.role, &info, exempt)?;
                for f in &m.features {
                    doc.connect_feature(&f.name, &info)?;
                }
            }
            Ok(())
        };
        let implicit_members = |id: EntityId| -> &[Member] {
            match &entities[id].kind {
                EntityKind::Object(o) if entities[id].is_implicit() => &o.local_members,
                _ => &[],
            }
        };
        match &e.kind {
            EntityKind::Enum { members, .. } => {
                for m in members {
                    let info = m.info.clone().unwrap_or_else(unreachable_info);
                    doc.connect_member(&m.name, "value", &info, exempt)?;
                    for f in &m.features {
                        doc.connect_feature(&f.name, &info)?;
                    }
                }
            }
            EntityKind::Object(o) => {
                if let Some(base) = o.base {
                    connect_members(doc, implicit_members(base))?;
                }
                connect_members(doc, &o.local_members)?;
            }
            EntityKind::Alternate(a) => connect_members(doc, &a.variants)?,
            EntityKind::Command(Command {
                arg_type: Some(arg),
                ..
            })
            | EntityKind::Event(Event {
                arg_type: Some(arg),
                ..
            }) => connect_members(doc, implicit_members(*arg))?,
            _ => {}
        }
        Ok(())
    }

    fn assign_modules(&mut self) {
        let builtin = self.module_index(BUILTIN_MODULE);
        let mut by_file: HashMap<*const crate::source::SourceFile, usize> = HashMap::new();
        for id in 0..self.schema.entities.len() {
            let e = &self.schema.entities[id];
            let info = match &e.kind {
                EntityKind::Array {
                    element: Some(el), ..
                } => self.schema.entities[*el].info.clone(),
                _ => e.info.clone(),
            };
            let m = match info {
                Some(i) => match by_file.get(&std::rc::Rc::as_ptr(&i.file)) {
                    Some(&m) => m,
                    None => {
                        let name = self.module_name(&i.file.name);
                        let m = self.module_index(&name);
                        by_file.insert(std::rc::Rc::as_ptr(&i.file), m);
                        m
                    }
                },
                None => builtin,
            };
            self.schema.entities[id].module = m;
            self.schema.modules[m].entities.push(id);
        }
    }

    fn module_index(&mut self, name: &str) -> usize {
        match self.schema.modules.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.schema.modules.push(Module {
                    name: name.to_string(),
                    entities: Vec::new(),
                });
                self.schema.modules.len() - 1
            }
        }
    }
}

// Only predefined entities lack an Info, and they are never reported on.
fn unreachable_info() -> Info {
    use std::rc::Rc;
    let file = Rc::new(crate::source::SourceFile {
        name: "<built-in>".into(),
        abs: PathBuf::new(),
        included_from: None,
    });
    Info::new(file, 0)
}

fn e_info(e: &Entity) -> Info {
    e.info.clone().unwrap_or_else(unreachable_info)
}

fn unreachable_object() -> ! {
    panic!("internal error: entity is not an object type")
}
