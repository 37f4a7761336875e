//! When scheduled work fires: times of day in UTC, computed from a given clock so that
//! tests need no sleeps.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC time of day, written `"HH:MM"` or `"HH:MM:SS"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl TimeOfDay {
    pub const fn new(hour: u8, minute: u8) -> Self {
        TimeOfDay {
            hour,
            minute,
            second: 0,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a time of day: expected \"HH:MM\" or \"HH:MM:SS\" (UTC), \
                 like \"11:30\""
            )
        };
        let parts: Vec<&str> = text.trim().split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts[1..].iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let number = |p: &str| p.parse::<u8>().map_err(|_| bad());
        let (hour, minute) = (number(parts[0])?, number(parts[1])?);
        let second = match parts.get(2) {
            Some(p) => number(p)?,
            None => 0,
        };
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay {
            hour,
            minute,
            second,
        })
    }

    /// Seconds after midnight UTC.
    pub fn seconds(self) -> u64 {
        u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)?;
        if self.second > 0 {
            write!(f, ":{:02}", self.second)?;
        }
        Ok(())
    }
}

const DAY: u64 = 24 * 3600;

/// The first of `times` strictly after `now`; `None` when `times` is empty.
pub fn next_fire(times: &[TimeOfDay], now: SystemTime) -> Option<SystemTime> {
    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let midnight = now_s - now_s % DAY;
    times
        .iter()
        .map(|t| {
            let today = midnight + t.seconds();
            if today > now_s { today } else { today + DAY }
        })
        .min()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("11:30").unwrap().seconds(), 41_400);
        assert_eq!(TimeOfDay::parse("00:05").unwrap().to_string(), "00:05");
        assert_eq!(TimeOfDay::parse("00:05:09").unwrap().seconds(), 309);
        assert_eq!(
            TimeOfDay::parse("23:59:59").unwrap().to_string(),
            "23:59:59"
        );
        for bad in [
            "24:00", "11:60", "1130", "11:3", "noon", "", "11:30:60", "11:30:5", "1:2:3:4",
        ] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn the_next_time_today_or_tomorrow() {
        let times = [TimeOfDay::new(11, 30), TimeOfDay::new(23, 30)];
        let day = 20_000 * DAY; // some midnight UTC
        assert_eq!(next_fire(&times, at(day)), Some(at(day + 41_400)));
        assert_eq!(next_fire(&times, at(day + 41_399)), Some(at(day + 41_400)));
        // Exactly at a fire time, the next one is the following.
        assert_eq!(next_fire(&times, at(day + 41_400)), Some(at(day + 84_600)));
        assert_eq!(
            next_fire(&times, at(day + 84_600)),
            Some(at(day + DAY + 41_400))
        );
        assert_eq!(next_fire(&[], at(day)), None);
        // Order in config does not matter.
        let reversed = [TimeOfDay::new(23, 30), TimeOfDay::new(11, 30)];
        assert_eq!(
            next_fire(&reversed, at(day + 50_000)),
            Some(at(day + 84_600))
        );
    }
}
