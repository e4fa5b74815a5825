//! Naming rules of the schema language.

/// The C identifier QEMU derives from a name (without keyword protection):
/// every character other than a letter, digit or `_` becomes `_`. Two
/// members clash when these agree.
pub fn c_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Splits a name into its optional `__RFQDN_` and `x-` prefixes and its
/// stem; `None` when the name is not well formed.
///
/// A name is letters, digits, `-` and `_`, starting with a letter; a
/// downstream extension prefix `__RFQDN_` and an experimental `x-` may come
/// before it, in that order.
pub fn split_name(name: &str) -> Option<&str> {
    if let Some(after) = name.strip_prefix("__") {
        // The RFQDN has no '_', so the first '_' ends it.
        let run = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(after.len());
        if run > 0
            && let Some(tail) = after[run..].strip_prefix('_')
        {
            return stem_after_x(tail);
        }
        return None;
    }
    stem_after_x(name)
}

fn stem_after_x(s: &str) -> Option<&str> {
    if let Some(tail) = s.strip_prefix("x-").or_else(|| s.strip_prefix("X-"))
        && is_stem(tail)
    {
        return Some(tail);
    }
    if is_stem(s) { Some(s) } else { None }
}

fn is_stem(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(split_name("foo-bar"), Some("foo-bar"));
        assert_eq!(split_name("x-foo"), Some("foo"));
        assert_eq!(split_name("__org.qemu_x-foo"), Some("foo"));
        assert_eq!(
            split_name("__com.redhat_drive-mirror"),
            Some("drive-mirror")
        );
        assert_eq!(split_name("_oops"), None);
        assert_eq!(split_name("*oops"), None);
        assert_eq!(split_name("1a"), None);
        assert_eq!(c_name("a-b.c"), "a_b_c");
    }
}
