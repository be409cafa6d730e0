//! Money as an exact count of ten-thousandths of the account's currency unit.
//!
//! SPEC §1 rounds money to 4 decimals, so 1/10,000 is the natural unit: prices like 0.0075
//! are exact, sums never drift, and the database stores a plain integer in both dialects.

use std::fmt;
use std::ops::{Add, Sub};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Units per currency unit.
const SCALE: i64 = 10_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_units(units: i64) -> Self {
        Self(units)
    }

    pub fn units(self) -> i64 {
        self.0
    }

    /// Parses a decimal such as `1000`, `0.0075` or `-3.5`; more than 4 decimals is an error,
    /// not a silent rounding.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if frac.len() > 4
            || !whole
                .chars()
                .chain(frac.chars())
                .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut frac_units: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        for _ in frac.len()..4 {
            frac_units = frac_units.checked_mul(10)?;
        }
        let units = whole.checked_mul(SCALE)?.checked_add(frac_units)?;
        Some(Self(if negative { -units } else { units }))
    }

    /// The value as a JSON number (f64 holds every 4-decimal amount below 2^53 / 10^4 exactly
    /// enough to print back the same decimal).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    pub fn times(self, n: u32) -> Money {
        Money(self.0.saturating_mul(i64::from(n)))
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / scale, abs % scale)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

/// Config may write money as a string (`"0.0075"`, exact) or a number (`0.0075`).
impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
            Integer(i64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Number(n) => format!("{n}"),
            Raw::Integer(n) => n.to_string(),
        };
        Money::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not an amount with at most 4 decimals"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(Money::parse("0.0075"), Some(Money(75)));
        assert_eq!(Money::parse("1000"), Some(Money(10_000_000)));
        assert_eq!(Money::parse("1000.5"), Some(Money(10_005_000)));
        assert_eq!(Money::parse("-2.25"), Some(Money(-22_500)));
        assert_eq!(Money::parse(".5"), Some(Money(5_000)));
    }

    #[test]
    fn more_than_four_decimals_or_junk_is_refused() {
        for bad in [
            "",
            ".",
            "0.00001",
            "1e3",
            "abc",
            "1.2.3",
            "--1",
            "99999999999999999999",
        ] {
            assert_eq!(Money::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn display_and_json_show_four_decimals_at_most() {
        assert_eq!(Money(9_999_925).to_string(), "999.9925");
        assert_eq!(Money(-75).to_string(), "-0.0075");
        assert_eq!(
            serde_json::to_string(&Money(9_999_925)).ok().as_deref(),
            Some("999.9925")
        );
    }
}
