//! Numbers and durations written exactly as Sloth (Go) writes them, so generated rules equal
//! Sloth's byte for byte: Go's shortest float formats (`%g`/`%v` and `strconv.FormatFloat(f, 'f',
//! -1, 64)`) and Prometheus' duration format (`model.Duration.String`: `5m`, `4w`, `1h30m`).
//!
//! Rust's shortest round-trip digits are the same digits Go chooses for the same `f64`; only the
//! layout (when to use an exponent, how to write it) differs, and that is what this module does.

/// The shortest decimal digits of a finite, non-negative `value` and its decimal exponent, such
/// that `value = 0.d1d2d3... * 10^point`.
fn digits(value: f64) -> (String, i32) {
    // `{:e}` prints the shortest round-trip digits: `1.44e1`, `5e-2`, `1.0000000000065512e-5`.
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return ("0".to_string(), 1);
    }
    (digits.to_string(), exponent + 1)
}

/// Go's `fmt.Sprintf("%g", v)` (also `%v` and `strconv.FormatFloat(v, 'g', -1, 64)`): the
/// shortest digits, in scientific notation when the exponent is below -4 or at least 6, as
/// `strconv` decides for the shortest precision (`1e+06`, `1e-05`, `0.0001`).
pub fn format_g(value: f64) -> String {
    let Some((sign, digits, point)) = parts(value) else {
        return special(value);
    };
    let exponent = point - 1;
    if !(-4..SHORTEST_G_PRECISION).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs());
    }
    format!("{sign}{}", fixed(&digits, point))
}

/// The exponent at and above which Go's shortest `%g` switches to scientific notation.
const SHORTEST_G_PRECISION: i32 = 6;

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest digits, never an exponent.
pub fn format_f(value: f64) -> String {
    match parts(value) {
        Some((sign, digits, point)) => format!("{sign}{}", fixed(&digits, point)),
        None => special(value),
    }
}

/// The sign, digits and decimal point of a finite, non-zero value; `None` for the others.
fn parts(value: f64) -> Option<(&'static str, String, i32)> {
    if !value.is_finite() || value == 0.0 {
        return None;
    }
    let sign = if value.is_sign_negative() { "-" } else { "" };
    let (digits, point) = digits(value.abs());
    Some((sign, digits, point))
}

/// Zero, infinities and NaN as Go writes them.
fn special(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        "0".to_string()
    }
}

/// `0.d1d2... * 10^point` written without an exponent.
fn fixed(digits: &str, point: i32) -> String {
    let count = digits.len() as i32;
    if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= count {
        format!("{digits}{}", "0".repeat((point - count) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_matches_go_for_the_numbers_sloth_writes() {
        // From Sloth's golden files: budgets, objectives and burn-rate factors.
        let cases = [
            ((100.0 - 99.9) / 100.0, "0.0009999999999999432"),
            ((100.0 - 99.99) / 100.0, "0.00010000000000005117"),
            (99.9 / 100.0, "0.9990000000000001"),
            (99.99 / 100.0, "0.9998999999999999"),
            (95.0 / 100.0, "0.95"),
            (14.4, "14.4"),
            (6.0, "6"),
            (5.0 * 672.0 / 100.0 / 6.0, "5.6000000000000005"),
            (10.0 * 672.0 / 100.0 / 24.0, "2.8000000000000003"),
            (10.0 * 672.0 / 100.0 / 72.0, "0.9333333333333333"),
            (30.0, "30"),
            (0.05, "0.05"),
            (0.0, "0"),
            // Go switches to an exponent below 1e-4: `fmt.Sprintf("%g", 0.00001)` is `1e-05`.
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (123456789.0, "1.23456789e+08"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (0.0001, "0.0001"),
        ];
        for (value, go) in cases {
            assert_eq!(format_g(value), go, "{value:?}");
        }
    }

    #[test]
    fn f_never_uses_an_exponent() {
        assert_eq!(format_f(99.9), "99.9");
        assert_eq!(format_f(95.0), "95");
        assert_eq!(format_f(0.999 * 100.0), "99.9");
        assert_eq!(format_f(0.00001), "0.00001");
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(-2.5), "-2.5");
    }
}
