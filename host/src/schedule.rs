//! When scheduled work fires: times of day in UTC, computed from a given clock so that
//! tests need no sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::TimeOfDay;

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
