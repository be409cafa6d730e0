//! Timestamps: milliseconds since the Unix epoch, UTC.
//!
//! One integer in both SQL dialects (sortable, no time-zone surprises), formatted at the edge:
//! RFC 3339 for Herald's own API, `YYYY-MM-DD HH:MM:SS` where seed 000 fixes that form.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (any offset), as clients send `scheduled_at`.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Self(t.timestamp_millis()))
    }

    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    pub fn minus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    fn datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Seed 000's form: `2025-12-03 10:30:00`.
    pub fn to_odoo(self) -> String {
        self.datetime().format("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// The UTC calendar day, `YYYY-MM-DD`: the key of daily counters.
    pub fn day(self) -> String {
        self.datetime().format("%Y-%m-%d").to_string()
    }

    /// Unix seconds as a float, as seed 004's `checked_at`.
    pub fn unix_seconds_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_rfc3339() {
        let t = Timestamp::parse_rfc3339("2025-12-03T10:30:00+02:00");
        assert_eq!(
            t.map(Timestamp::to_rfc3339).as_deref(),
            Some("2025-12-03T08:30:00.000Z")
        );
        assert_eq!(
            t.map(Timestamp::to_odoo).as_deref(),
            Some("2025-12-03 08:30:00")
        );
        assert_eq!(t.map(Timestamp::day).as_deref(), Some("2025-12-03"));
        assert_eq!(Timestamp::parse_rfc3339("tomorrow"), None);
    }
}
