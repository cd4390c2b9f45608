//! Kubernetes resource quantities ("100m", "1.5", "128Mi", "1e3") as exact
//! values in nano-units, printed the way apimachinery's `Quantity.String()`
//! prints them: what LimitRanger and ResourceQuota compare, add and quote
//! in their messages. Pure; the scheduler keeps its own f64 parser.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

const NANO: i128 = 1_000_000_000;

/// The suffix family a quantity was written in; it decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// An exact resource quantity.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

fn pow(base: i128, exp: u32) -> Option<i128> {
    base.checked_pow(exp)
}

impl Quantity {
    /// Parses Kubernetes' quantity syntax; None when malformed or out of range.
    pub fn parse(text: &str) -> Option<Quantity> {
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let digits = format!("{whole}{frac}");
        let mantissa: i128 = digits.parse().ok()?;
        // value = mantissa * 10^(-frac.len()) * multiplier
        let (format, binary_shift, decimal_exp): (Format, u32, i32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, 0, -9),
            "u" => (Format::DecimalSI, 0, -6),
            "m" => (Format::DecimalSI, 0, -3),
            "k" => (Format::DecimalSI, 0, 3),
            "M" => (Format::DecimalSI, 0, 6),
            "G" => (Format::DecimalSI, 0, 9),
            "T" => (Format::DecimalSI, 0, 12),
            "P" => (Format::DecimalSI, 0, 15),
            "E" => (Format::DecimalSI, 0, 18),
            "Ki" => (Format::BinarySI, 10, 0),
            "Mi" => (Format::BinarySI, 20, 0),
            "Gi" => (Format::BinarySI, 30, 0),
            "Ti" => (Format::BinarySI, 40, 0),
            "Pi" => (Format::BinarySI, 50, 0),
            "Ei" => (Format::BinarySI, 60, 0),
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().ok()?;
                (Format::DecimalExponent, 0, exp)
            }
            _ => return None,
        };
        let scaled = mantissa.checked_mul(1i128 << binary_shift)?;
        // nanos = scaled * 10^(decimal_exp + 9 - frac.len()), rounded up.
        let exp = decimal_exp + 9 - frac.len() as i32;
        let nanos = if exp >= 0 {
            scaled.checked_mul(pow(10, exp as u32)?)?
        } else {
            let div = pow(10, (-exp) as u32).unwrap_or(i128::MAX);
            scaled / div + i128::from(scaled % div != 0)
        };
        let nanos = if negative { -nanos } else { nanos };
        Some(Quantity { nanos, format })
    }

    /// A quantity from a JSON value (Kubernetes accepts strings and numbers).
    pub fn from_value(v: &Value) -> Option<Quantity> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }

    /// A whole count (`pods=3`), printed in decimal.
    pub fn count(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSI,
        }
    }

    /// Zero.
    pub fn zero() -> Quantity {
        Quantity::count(0)
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The sum, printed in this quantity's format (as apimachinery's `Add`).
    pub fn add(self, other: Quantity) -> Quantity {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format,
        }
    }

    /// `self / other` as a float (for limit-to-request ratios).
    pub fn ratio(&self, other: &Quantity) -> f64 {
        self.nanos as f64 / other.nanos as f64
    }
}

const DECIMAL_SUFFIXES: &[(i32, &str)] = &[
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
];

impl fmt::Display for Quantity {
    /// Kubernetes' canonical form: the largest suffix that keeps an integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut value = self.nanos / NANO;
            let mut step = 0;
            while step < 6 && value % 1024 == 0 {
                value /= 1024;
                step += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][step];
            return write!(f, "{value}{suffix}");
        }
        let (mut mantissa, mut exp) = (self.nanos, -9);
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        if format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp}")
            };
        }
        let suffix = DECIMAL_SUFFIXES
            .iter()
            .find(|(e, _)| *e == exp)
            .map_or("", |(_, s)| s);
        write!(f, "{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn parses_every_suffix_family() {
        assert_eq!(q("100m"), q("0.1"));
        assert_eq!(q("1.5"), q("1500m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("128Mi"), Quantity::count(128 * 1024 * 1024));
        assert!(q("2") > q("1999m"));
        for bad in ["", "abc", "1.2.3", "5Zi", "m", "1e"] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            Quantity::from_value(&serde_json::json!(2)),
            Some(Quantity::count(2))
        );
    }

    #[test]
    fn prints_canonically_like_apimachinery() {
        for (input, shown) in [
            ("4", "4"),
            ("4000m", "4"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("1000", "1k"),
            ("128974848", "128974848"),
            ("128Mi", "128Mi"),
            ("1536Mi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("512", "512"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("-2", "-2"),
        ] {
            assert_eq!(q(input).to_string(), shown, "{input}");
        }
    }

    #[test]
    fn sums_keep_the_first_format() {
        let sum = q("64Mi").add(q("64Mi"));
        assert_eq!(sum.to_string(), "128Mi");
        assert_eq!(Quantity::zero().add(q("1Gi")).to_string(), "1Gi");
        assert_eq!(q("250m").add(q("750m")).to_string(), "1");
        assert_eq!(q("1").max(q("1500m")), q("1.5"));
        assert!((q("4").ratio(&q("1")) - 4.0).abs() < 1e-9);
    }
}
