//! Small value types with their text forms: durations, byte sizes, cron schedules.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written as `90s`, `5m`, `1h30m`, `2d`, or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        if let Ok(n) = t.parse::<u64>() {
            return Some(Self::secs(n));
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        let mut any = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let mult = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return None,
            };
            let n: u64 = num.parse().ok()?;
            total = total.checked_add(n.checked_mul(mult)?)?;
            num.clear();
            any = true;
        }
        (any && num.is_empty()).then_some(Self::secs(total))
    }
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        if s == 0 {
            return write!(f, "0s");
        }
        for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if s >= len {
                write!(f, "{}{unit}", s / len)?;
                s %= len;
            }
        }
        Ok(())
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes written as `512M`, `6G`, `6GiB`, `1.5G` (binary multiples, as Docker reads
/// them), or a bare number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

impl Bytes {
    pub const fn mib(n: u64) -> Self {
        Self(n * MIB)
    }
    pub const fn gib(n: u64) -> Self {
        Self(n * GIB)
    }
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return None;
        }
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "ki" | "kib" => KIB,
            "m" | "mb" | "mi" | "mib" => MIB,
            "g" | "gb" | "gi" | "gib" => GIB,
            "t" | "tb" | "ti" | "tib" => TIB,
            _ => return None,
        };
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(Self);
        }
        let f: f64 = num.parse().ok()?;
        let v = f * mult as f64;
        (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then(|| Self(v.round() as u64))
    }

    /// A measured size for people to read (a host's memory): the largest unit it has at least
    /// one of, rounded down, with one decimal below 10 (`23G`, `3.8G`, `512M`). Rounding down
    /// never claims more than there is. Exact sizes print as [`Display`](fmt::Display) does.
    pub fn approx(self) -> String {
        let b = self.0;
        for (unit, len) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
            if b < len {
                continue;
            }
            let (whole, tenths) = (b / len, b % len * 10 / len);
            return if whole >= 10 || tenths == 0 {
                format!("{whole}{unit}")
            } else {
                format!("{whole}.{tenths}{unit}")
            };
        }
        b.to_string()
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, len) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
            if b >= len && b.is_multiple_of(len) {
                return write!(f, "{}{unit}", b / len);
            }
        }
        write!(f, "{b}")
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Bytes::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a size")))
    }
}

/// Unix seconds of an RFC 3339 timestamp as container engines report it
/// (`2026-11-25T04:37:24.134456868Z`; an offset like `+01:00` is applied; the fraction is
/// dropped). `None` if malformed, if the date does not exist, or outside what jiff represents
/// (about years -9999 to 9999).
/// An RFC 3339 timestamp (fractions of a second kept) as unix nanoseconds.
pub fn rfc3339_to_unix_nanos(t: &str) -> Option<i64> {
    t.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|ts| i64::try_from(ts.as_nanosecond()).ok())
}

pub fn rfc3339_to_unix(t: &str) -> Option<i64> {
    t.parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_second)
}

/// Checks a standard 5-field cron expression (minute hour day-of-month month day-of-week).
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "a cron schedule has 5 fields (minute hour day month weekday), this one has {fields}"
        ));
    }
    expr.parse::<croner::Cron>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximate_sizes_round_down_to_one_unit() {
        for (bytes, shown) in [
            (0, "0"),
            (1023, "1023"),
            (KIB, "1K"),
            (Bytes::mib(512).0, "512M"),
            (Bytes::gib(6).0, "6G"),
            (24_590_316 * KIB, "23G"),
            (GIB * 38 / 10, "3.7G"),
            (GIB * 39 / 10 + MIB, "3.9G"),
            (GIB * 2 - 1, "1.9G"),
            (GIB * 10 - 1, "9.9G"),
            (TIB + GIB * 512, "1.5T"),
        ] {
            assert_eq!(Bytes(bytes).approx(), shown, "{bytes}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("90"), Some(Dur::secs(90)));
        assert_eq!(Dur::parse("5m"), Some(Dur::secs(300)));
        assert_eq!(Dur::parse("1h30m"), Some(Dur::secs(5400)));
        assert_eq!(Dur::parse("5x"), None);
        assert_eq!(Dur::parse("m"), None);
        assert_eq!(Dur::parse("5m3"), None);
        assert_eq!(Dur::secs(5400).to_string(), "1h30m");
    }

    #[test]
    fn sizes() {
        assert_eq!(Bytes::parse("6G"), Some(Bytes::gib(6)));
        assert_eq!(Bytes::parse("512MiB"), Some(Bytes::mib(512)));
        assert_eq!(Bytes::parse("1.5g"), Some(Bytes(3 * GIB / 2)));
        assert_eq!(Bytes::parse("6X"), None);
        assert_eq!(Bytes::gib(6).to_string(), "6G");
        assert_eq!(Bytes(1536 * MIB).to_string(), "1536M");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_to_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_unix("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            rfc3339_to_unix("2026-11-25T04:37:24.134456868Z"),
            Some(1_795_581_444)
        );
        assert_eq!(
            rfc3339_to_unix("2026-11-25T05:37:24+01:00"),
            Some(1_795_581_444)
        );
        assert_eq!(
            rfc3339_to_unix("0001-01-01T00:00:00Z"),
            Some(-62_135_596_800),
            "Docker's zero time"
        );
        assert_eq!(rfc3339_to_unix("yesterday"), None);
        assert_eq!(rfc3339_to_unix("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_to_unix("2026-02-30T00:00:00Z"), None, "no such day");
        assert_eq!(rfc3339_to_unix("2026-11-25T04:37:24"), None, "no offset");
        assert_eq!(rfc3339_to_unix("2026-11-25T04:61:24Z"), None);
    }

    #[test]
    fn cron() {
        assert!(check_cron("0 */6 * * *").is_ok());
        assert!(check_cron("0 */6 * *").is_err());
        assert!(check_cron("61 * * * *").is_err());
    }
}
