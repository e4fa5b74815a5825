//! String to number conversions with the exact rules of QEMU's
//! `qemu_strtoi64()`, `qemu_strtou64()` (base 0, the whole string),
//! `qemu_strtosz()`, `qemu_strtod_finite()` and `qapi_bool_parse()`, which
//! its keyval visitor and QemuOpts use. They follow C's `strtoll()` family:
//! leading white space and a sign are accepted, trailing characters are not.

/// C's `isspace()` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull()`-style scanning found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    negative: bool,
    /// The digits' value, saturated.
    magnitude: u64,
    overflow: bool,
    /// Bytes consumed; 0 when no conversion was performed.
    end: usize,
}

fn digit_value(b: u8) -> Option<u32> {
    (b as char).to_digit(36)
}

/// Scans like `strtoull(s, &end, base)` for base 0, 10 or 16.
fn scan_int(s: &[u8], base: u32) -> Scan {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let hex_prefix = |i: usize| {
        i + 2 < s.len() && s[i] == b'0' && (s[i + 1] | 0x20) == b'x' && s[i + 2].is_ascii_hexdigit()
    };
    let base = match base {
        0 if hex_prefix(i) => {
            i += 2;
            16
        }
        0 if i < s.len() && s[i] == b'0' => 8,
        0 => 10,
        16 => {
            if hex_prefix(i) {
                i += 2;
            }
            16
        }
        b => b,
    };
    let start = i;
    let (mut magnitude, mut overflow) = (0u64, false);
    while let Some(d) = s.get(i).and_then(|&b| digit_value(b)).filter(|&d| d < base) {
        match magnitude
            .checked_mul(u64::from(base))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(m) => magnitude = m,
            None => {
                overflow = true;
                magnitude = u64::MAX;
            }
        }
        i += 1;
    }
    let end = if i == start { 0 } else { i };
    Scan {
        negative,
        magnitude,
        overflow,
        end,
    }
}

/// `qemu_strtoi64(s, NULL, 0, &v)`: decimal, `0x` hexadecimal or `0`
/// octal, the whole string, in range.
pub fn strtoi64(s: &str) -> Option<i64> {
    let scan = scan_int(s.as_bytes(), 0);
    if scan.end == 0 || scan.end != s.len() || scan.overflow {
        return None;
    }
    if scan.negative {
        if scan.magnitude <= 1 << 63 {
            Some(0i64.wrapping_sub_unsigned(scan.magnitude))
        } else {
            None
        }
    } else {
        i64::try_from(scan.magnitude).ok()
    }
}

/// `qemu_strtou64(s, NULL, 0, &v)`: like [`strtoi64`], but a minus sign
/// negates the value in 64-bit unsigned arithmetic, as `strtoull()` does
/// (`-1` is 18446744073709551615).
pub fn strtou64(s: &str) -> Option<u64> {
    strtou64_checked(s).ok()
}

/// [`strtou64`] telling overflow (`-ERANGE`) from other errors.
pub fn strtou64_checked(s: &str) -> Result<u64, NumError> {
    let scan = scan_int(s.as_bytes(), 0);
    if scan.end == 0 {
        return Err(NumError::Invalid);
    }
    // strtoull() reports overflow even when characters follow, but QEMU
    // checks for trailing characters first.
    if scan.end != s.len() {
        return Err(NumError::Invalid);
    }
    if scan.overflow {
        return Err(NumError::Range);
    }
    Ok(if scan.negative {
        scan.magnitude.wrapping_neg()
    } else {
        scan.magnitude
    })
}

/// `qemu_strtoi(s, NULL, 10, &v)`: a decimal `int`, the whole string.
pub fn strtoi32_decimal(s: &str) -> Option<i32> {
    let scan = scan_int(s.as_bytes(), 10);
    if scan.end == 0 || scan.end != s.len() || scan.overflow {
        return None;
    }
    let v = if scan.negative {
        0i64.checked_sub_unsigned(scan.magnitude)?
    } else {
        i64::try_from(scan.magnitude).ok()?
    };
    i32::try_from(v).ok()
}

/// Why a number was rejected; QemuOpts words the two differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Not a size (`-EINVAL`).
    Invalid,
    /// Negative or too large (`-ERANGE`).
    Range,
}

/// Multiplier of a size suffix (`B`, `K`, `M`, `G`, `T`, `P`, `E`, either
/// case), powers of 1024.
fn suffix_mul(c: Option<u8>) -> Option<u64> {
    let exp = match c?.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 1,
        b'M' => 2,
        b'G' => 3,
        b'T' => 4,
        b'P' => 5,
        b'E' => 6,
        _ => return None,
    };
    Some(1u64 << (10 * exp))
}

/// Decimal floating point as `strtod()` reads it without an exponent (the
/// caller cut the string at the first `e`/`E`): white space, a sign,
/// digits with at most one `.`. Returns the value, the bytes consumed and
/// whether any digit is non-zero.
fn scan_fraction(s: &[u8]) -> Option<(f64, usize, bool)> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let start = i;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        i += 1;
    }
    let (mut digits, mut dot, mut nonzero) = (0, false, false);
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' => {
                digits += 1;
                nonzero |= s[i] != b'0';
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        // "inf", "nan" and hexadecimal floats are not finite or cannot
        // occur here; either way QEMU rejects them.
        return None;
    }
    let text = std::str::from_utf8(&s[start..i]).ok()?;
    let value: f64 = text.parse().ok()?;
    Some((value, i, nonzero))
}

/// `qemu_strtosz(s, NULL, &v)`: a byte count, optionally with a binary
/// suffix (`k`, `M`, `G`, `T`, `P`, `E`; `B` for bytes) and then with a
/// decimal fraction (`1.5G`, rounded to the nearest byte); hexadecimal
/// (`0x1f`) without fraction or suffix. Negative values, exponents and
/// values of 2^64 or more are refused.
pub fn strtosz(s: &str) -> Result<u64, NumError> {
    let b = s.as_bytes();
    // parse_uint(nptr, &endptr, 10, &val)
    let scan = scan_int(b, 10);
    let (mut val, mut end, mut invalid) = (scan.magnitude, scan.end, scan.end == 0);
    if !invalid && (scan.overflow || scan.negative) {
        return Err(NumError::Range);
    }
    let mut valf: u64 = 0;
    if !invalid && val == 0 && matches!(b.get(end), Some(b'x' | b'X')) {
        // Looks like hex: reparse, and insist on no fraction or suffix.
        let hex = scan_int(b, 16);
        if hex.end == 0 {
            return Err(NumError::Invalid);
        }
        if hex.overflow {
            return Err(NumError::Range);
        }
        (val, end) = (hex.magnitude, hex.end);
        if b.get(end) == Some(&b'.') || suffix_mul(b.get(end).copied()).is_some() {
            return Err(NumError::Invalid);
        }
    } else if b.get(end) == Some(&b'.') || (invalid && s.contains('.')) {
        // A fraction: "1.k" works without fractional digits; strtod()
        // would take 'e' as an exponent, but it is the exabyte suffix.
        let mut fraction = 0.0;
        let mut nonzero = false;
        if !invalid && !b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1;
        } else {
            let tail = &b[end..];
            let cut = tail
                .iter()
                .position(|&c| c == b'e' || c == b'E')
                .unwrap_or(tail.len());
            match scan_fraction(&tail[..cut]) {
                Some((f, used, nz)) => {
                    (fraction, nonzero) = (f, nz);
                    end += used;
                    invalid = false;
                    if f.is_sign_negative() {
                        return Err(NumError::Range);
                    }
                }
                None => invalid = true,
            }
        }
        if fraction == 1.0 {
            val = val.checked_add(1).ok_or(NumError::Range)?;
        } else {
            // A 64-bit fixed-point fraction, non-zero for any non-zero one.
            valf = (fraction * 18_446_744_073_709_551_616.0) as u64;
            if valf == 0 && nonzero {
                valf = 1;
            }
        }
    }
    if invalid {
        return Err(NumError::Invalid);
    }
    let mul = match suffix_mul(b.get(end).copied()) {
        Some(m) => {
            end += 1;
            m
        }
        None => 1,
    };
    if mul == 1 {
        // A fraction needs a scale.
        if valf != 0 {
            return Err(NumError::Invalid);
        }
    } else {
        // Exact: 64.64 fixed point times 64 bits, rounding 0.5 up.
        let frac = u128::from(valf) * u128::from(mul);
        let total =
            u128::from(val) * u128::from(mul) + (frac >> 64) + ((frac as u64) >> 63) as u128;
        val = u64::try_from(total).map_err(|_| NumError::Range)?;
    }
    if end != b.len() {
        return Err(NumError::Invalid);
    }
    Ok(val)
}

/// `qemu_strtod_finite(s, NULL, &v)`: a finite floating point number in
/// C syntax (decimal with optional exponent, or hexadecimal `0x1.8p3`),
/// the whole string; overflow and underflow are errors.
pub fn strtod_finite(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    let text = &s[i..];
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (value, nonzero) = if body.len() > 2 && body[..2].eq_ignore_ascii_case("0x") {
        hex_float(&body[2..])?
    } else {
        decimal_float(body)?
    };
    // ERANGE: overflow to infinity, or underflow to zero or a subnormal.
    if !value.is_finite() || (nonzero && (value == 0.0 || value.is_subnormal())) {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// Digits, at most one `.`, then an optional exponent; Rust's parser does
/// the rounding. Returns the value and whether the mantissa is non-zero.
fn decimal_float(s: &str) -> Option<(f64, bool)> {
    let b = s.as_bytes();
    let (mut i, mut digits, mut dot, mut nonzero) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => {
                digits += 1;
                nonzero |= b[i] != b'0';
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    if i != b.len() {
        return None;
    }
    Some((s.parse().ok()?, nonzero))
}

/// A hexadecimal float after `0x`: hex digits with at most one `.`, then
/// an optional binary exponent `p[+-]digits`.
fn hex_float(s: &str) -> Option<(f64, bool)> {
    let b = s.as_bytes();
    let (mut i, mut digits, mut dot) = (0, 0, false);
    let mut mantissa = 0.0f64;
    let mut scale: i64 = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_hexdigit() => {
                mantissa = mantissa * 16.0 + f64::from((c as char).to_digit(16)?);
                digits += 1;
                if dot {
                    scale -= 4;
                }
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] | 0x20) == b'p' {
        let mut j = i + 1;
        let mut negative = false;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            negative = b[j] == b'-';
            j += 1;
        }
        let exp_start = j;
        let mut exp: i64 = 0;
        while j < b.len() && b[j].is_ascii_digit() {
            exp = (exp * 10 + i64::from(b[j] - b'0')).min(100_000);
            j += 1;
        }
        if j > exp_start {
            i = j;
            scale += if negative { -exp } else { exp };
        }
    }
    if i != b.len() {
        return None;
    }
    let nonzero = mantissa != 0.0;
    let exp = i32::try_from(scale.clamp(-100_000, 100_000)).ok()?;
    Some((mantissa * 2f64.powi(exp), nonzero))
}

/// `qapi_bool_parse()`: `on`, `yes`, `true`, `y` and `off`, `no`, `false`,
/// `n`, exactly (case matters).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_strtoll_with_base_0() {
        for (s, v) in [
            ("10", Some(10)),
            ("-10", Some(-10)),
            ("+5", Some(5)),
            (" \t5", Some(5)),
            ("0x10", Some(16)),
            ("0X1f", Some(31)),
            ("010", Some(8)),
            ("-0x10", Some(-16)),
            ("0", Some(0)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            // Each of these was refused by qemu-storage-daemon 10.0.2
            // ("Parameter 'size' expects integer").
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("08", None),
            ("5 ", None),
            ("0x", None),
            ("1e3", None),
            ("1.0", None),
            ("", None),
            ("-", None),
            ("0b1", None),
        ] {
            assert_eq!(strtoi64(s), v, "{s:?}");
        }
    }

    #[test]
    fn unsigned_integers_wrap_negative_values() {
        assert_eq!(strtou64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtou64("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(strtou64("-1"), Some(u64::MAX));
        assert_eq!(strtou64(" -1"), Some(u64::MAX));
        assert_eq!(strtou64("-18446744073709551615"), Some(1));
        assert_eq!(strtou64("-18446744073709551616"), None);
        assert_eq!(strtou64("18446744073709551616"), None);
    }

    #[test]
    fn sizes_follow_qemu_strtosz() {
        let k = 1024u64;
        for (s, v) in [
            ("0", Ok(0)),
            ("512", Ok(512)),
            ("1k", Ok(k)),
            ("1K", Ok(k)),
            ("1B", Ok(1)),
            ("1b", Ok(1)),
            ("2M", Ok(2 * k * k)),
            ("1G", Ok(k * k * k)),
            ("1T", Ok(k.pow(4))),
            ("1P", Ok(k.pow(5))),
            ("1E", Ok(k.pow(6))),
            ("1e", Ok(k.pow(6))),
            ("1.5G", Ok(3 * k * k * k / 2)),
            ("1.5e", Ok(3 * k.pow(6) / 2)),
            ("0.5k", Ok(512)),
            (".5k", Ok(512)),
            ("+.5k", Ok(512)),
            ("1.k", Ok(k)),
            ("1.", Ok(1)),
            ("1.0", Ok(1)),
            ("1.0B", Ok(1)),
            // 1.1k = 1126.4, 1.9k = 1945.6: rounded to the nearest byte.
            ("1.1k", Ok(1126)),
            ("1.9k", Ok(1946)),
            ("0x10", Ok(16)),
            ("0x1b", Ok(27)),
            ("010", Ok(10)),
            ("08", Ok(8)),
            (" 1k", Ok(k)),
            ("15E", Ok(15 * k.pow(6))),
            ("18446744073709551615", Ok(u64::MAX)),
            ("16E", Err(NumError::Range)),
            ("18446744073709551616", Err(NumError::Range)),
            ("-1", Err(NumError::Range)),
            ("-0", Err(NumError::Range)),
            ("-.5k", Err(NumError::Range)),
            ("1.5", Err(NumError::Invalid)),
            ("1.5B", Err(NumError::Invalid)),
            ("0x10k", Err(NumError::Invalid)),
            ("0x1.8", Err(NumError::Invalid)),
            ("0x", Err(NumError::Invalid)),
            ("1e3", Err(NumError::Invalid)),
            ("1kB", Err(NumError::Invalid)),
            ("1k ", Err(NumError::Invalid)),
            ("1x", Err(NumError::Invalid)),
            ("k", Err(NumError::Invalid)),
            ("", Err(NumError::Invalid)),
            ("inf", Err(NumError::Invalid)),
            ("1.5.5k", Err(NumError::Invalid)),
        ] {
            assert_eq!(strtosz(s), v, "{s:?}");
        }
    }

    #[test]
    fn floats_are_finite_c_numbers() {
        assert_eq!(strtod_finite("1.5"), Some(1.5));
        assert_eq!(strtod_finite(" -2e3"), Some(-2000.0));
        assert_eq!(strtod_finite(".5"), Some(0.5));
        assert_eq!(strtod_finite("5."), Some(5.0));
        assert_eq!(strtod_finite("0x1.8p1"), Some(3.0));
        assert_eq!(strtod_finite("0"), Some(0.0));
        assert_eq!(strtod_finite("1e999"), None);
        assert_eq!(strtod_finite("1e-999"), None);
        assert_eq!(strtod_finite("inf"), None);
        assert_eq!(strtod_finite("nan"), None);
        assert_eq!(strtod_finite("1.5 "), None);
        assert_eq!(strtod_finite(""), None);
        assert_eq!(strtod_finite("1e"), None);
    }

    #[test]
    fn booleans_as_qapi_bool_parse() {
        // All eight were accepted by qemu-storage-daemon 10.0.2 for
        // read-only=...; "ON", "1" and "0" were refused.
        for s in ["on", "yes", "true", "y"] {
            assert_eq!(parse_bool(s), Some(true));
        }
        for s in ["off", "no", "false", "n"] {
            assert_eq!(parse_bool(s), Some(false));
        }
        for s in ["ON", "1", "0", ""] {
            assert_eq!(parse_bool(s), None);
        }
    }
}
