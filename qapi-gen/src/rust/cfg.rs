//! QAPI conditions to `cfg` predicates.

use std::collections::BTreeMap;

use crate::model::IfCond;
use crate::value::Value;

/// Maps condition names to `cfg` predicates.
///
/// Names not in the map follow the default rule: `CONFIG_` is dropped, the
/// rest is lower-cased with `_` turned into `-`, and the result is a cargo
/// feature: `CONFIG_LIBURING` -> `feature = "liburing"`,
/// `HAVE_CHARDEV_SERIAL` -> `feature = "have-chardev-serial"`.
#[derive(Debug, Clone)]
pub struct CondMap {
    map: BTreeMap<String, String>,
}

impl Default for CondMap {
    /// The storage daemon's mapping: the export backends are cargo
    /// features (`fuse`, `vhost-user-blk`, `vduse`, `io-uring`), platform
    /// conditions are target checks (`CONFIG_LINUX`, `CONFIG_POSIX`,
    /// `CONFIG_WIN32`, `HAVE_IPPROTO_MPTCP`).
    fn default() -> Self {
        let mut m = CondMap::features_only();
        m.set("CONFIG_FUSE", "feature = \"fuse\"");
        m.set(
            "CONFIG_VHOST_USER_BLK_SERVER",
            "feature = \"vhost-user-blk\"",
        );
        m.set("CONFIG_VDUSE_BLK_EXPORT", "feature = \"vduse\"");
        m.set("CONFIG_LINUX", "target_os = \"linux\"");
        m.set(
            "CONFIG_LINUX_IO_URING",
            "all(target_os = \"linux\", feature = \"io-uring\")",
        );
        m.set("HAVE_IPPROTO_MPTCP", "target_os = \"linux\"");
        m.set("CONFIG_POSIX", "unix");
        m.set("CONFIG_WIN32", "windows");
        m
    }
}

impl CondMap {
    /// Every condition is a cargo feature named by the default rule.
    pub fn features_only() -> Self {
        CondMap {
            map: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, cond: &str, predicate: &str) {
        self.map.insert(cond.to_string(), predicate.to_string());
    }

    /// The cargo feature the default rule gives `cond`.
    pub fn feature_name(cond: &str) -> String {
        cond.strip_prefix("CONFIG_")
            .unwrap_or(cond)
            .to_ascii_lowercase()
            .replace('_', "-")
    }

    fn name(&self, cond: &str) -> String {
        match self.map.get(cond) {
            Some(p) => p.clone(),
            None => format!("feature = \"{}\"", Self::feature_name(cond)),
        }
    }

    fn value(&self, v: &Value) -> String {
        match v {
            Value::Str(s) => self.name(s),
            Value::Dict(d) => {
                let Some((op, arg)) = d.0.first() else {
                    return "all()".into();
                };
                match (op.as_str(), arg) {
                    ("not", inner) => format!("not({})", self.value(inner)),
                    (op, Value::List(items)) => {
                        let parts: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                        format!("{op}({})", parts.join(", "))
                    }
                    _ => "all()".into(),
                }
            }
            _ => "all()".into(),
        }
    }

    /// The predicate for a condition, `None` when unconditional.
    pub fn predicate(&self, c: &IfCond) -> Option<String> {
        c.0.as_ref().map(|v| self.value(v))
    }
}
