//! Durations as users write them: `90d`, `36h`, `15m`, `0s`, or a sum such
//! as `1d12h`. Never negative: a wait or an age limit below zero has no meaning.

use std::fmt;
use std::str::FromStr;

/// A non-negative length of time with one-second resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    secs: u64,
}

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

impl Duration {
    pub const ZERO: Duration = Duration { secs: 0 };

    /// The longest duration accepted (about 7,900 years): added to any date
    /// since 1970 it stays below the last timestamp there is (year 9999).
    pub const MAX: Duration = Duration { secs: 250_000_000_000 };

    pub const fn from_secs(secs: u64) -> Self {
        Duration { secs }
    }

    pub const fn from_days(days: u64) -> Self {
        Duration { secs: days * 86_400 }
    }

    pub const fn as_secs(self) -> u64 {
        self.secs
    }

    /// Whole days, rounded down.
    pub const fn whole_days(self) -> u64 {
        self.secs / 86_400
    }

    pub fn to_signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.secs as i64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {problem}; write a number and a unit (d, h, m, s), like 90d, 36h, 15m or 0s")]
pub struct ParseDurationError {
    input: String,
    problem: &'static str,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |problem| ParseDurationError { input: input.to_owned(), problem };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.starts_with('-') {
            return Err(fail("durations cannot be negative"));
        }
        let mut secs: u64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let (_, unit) = UNITS
                .iter()
                .find(|(name, _)| *name == c)
                .ok_or_else(|| fail("unknown unit"))?;
            if digits.is_empty() {
                return Err(fail("a unit without a number"));
            }
            let n: u64 = digits.parse().map_err(|_| fail("number too large"))?;
            secs = n
                .checked_mul(*unit)
                .and_then(|s| secs.checked_add(s))
                .ok_or_else(|| fail("number too large"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(fail("a number without a unit"));
        }
        if secs > Duration::MAX.secs {
            return Err(fail("longer than a timestamp can hold (about 7,900 years)"));
        }
        Ok(Duration { secs })
    }
}

impl fmt::Display for Duration {
    /// In the largest unit that holds it exactly, as people write limits:
    /// `90d`, `36h` (not `1d12h`), `15m`, `0s`. Parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // invariant: the last unit, 1 s, divides everything
        let (name, unit) = UNITS.iter().find(|(_, unit)| self.secs.is_multiple_of(*unit)).expect("seconds divide everything");
        write!(f, "{}{}", self.secs / unit, name)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_sums() {
        assert_eq!("90d".parse::<Duration>().unwrap(), Duration::from_days(90));
        assert_eq!("36h".parse::<Duration>().unwrap().as_secs(), 36 * 3600);
        assert_eq!("15m".parse::<Duration>().unwrap().as_secs(), 900);
        assert_eq!("0s".parse::<Duration>().unwrap(), Duration::ZERO);
        assert_eq!("1d12h30m5s".parse::<Duration>().unwrap().as_secs(), 86_400 + 12 * 3600 + 1800 + 5);
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "90", "d", "-5d", "5x", "1.5d", "5 d", "99999999999999999999d", "9999999999999999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should not parse");
        }
        let err = "-1d".parse::<Duration>().unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "90d", "1d12h", "36h", "15m", "1d1s"] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
        assert_eq!("36h".parse::<Duration>().unwrap().to_string(), "36h");
        assert_eq!("1d12h".parse::<Duration>().unwrap().to_string(), "36h");
        assert_eq!("1d1s".parse::<Duration>().unwrap().to_string(), "86401s");
    }

    #[test]
    fn durations_a_timestamp_cannot_hold_are_rejected() {
        // Regression: `scan --max-age 3000000d` overflowed a timestamp and panicked.
        let err = "3000000d".parse::<Duration>().unwrap_err().to_string();
        assert!(err.contains("longer than a timestamp can hold"), "{err}");
        assert!("2800000d".parse::<Duration>().is_ok());
        assert!(jiff::Timestamp::UNIX_EPOCH.checked_add(Duration::MAX.to_signed()).is_ok());
        assert_eq!(Duration::MAX.to_string().parse::<Duration>().unwrap(), Duration::MAX);
    }
}
