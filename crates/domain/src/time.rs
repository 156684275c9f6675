//! Instants as milliseconds since the Unix epoch: one integer column in every database, and
//! rendered for callers as RFC 3339 UTC with milliseconds (`2024-01-15T10:30:00.000Z`).

use serde::{Deserialize, Serialize};
use std::fmt;
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    pub fn plus_days(self, days: i64) -> Self {
        self.plus_seconds(days.saturating_mul(86_400))
    }

    fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(UtcOffset::UTC)
    }

    /// The UTC calendar day, `YYYY-MM-DD`: the bucket usage is counted in.
    pub fn day(self) -> String {
        let date = self.to_datetime().date();
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    }

    /// RFC 3339 in UTC with exactly three fraction digits and a `Z`.
    pub fn to_rfc3339(self) -> String {
        let dt = self.to_datetime();
        let date = dt.date();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            date.year(),
            u8::from(date.month()),
            date.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }

    /// Parses any RFC 3339 instant (offsets allowed), keeping millisecond precision.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        Some(Self((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_with_milliseconds_in_utc() {
        let t = Timestamp::from_millis(1_705_314_600_000);
        assert_eq!(t.to_rfc3339(), "2024-01-15T10:30:00.000Z");
        assert_eq!(t.day(), "2024-01-15");
    }

    #[test]
    fn parses_offsets_back_to_the_same_instant() {
        let t = Timestamp::parse_rfc3339("2024-01-15T12:30:00.250+02:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2024-01-15T10:30:00.250Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }
}
