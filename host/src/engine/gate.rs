//! The gate every request to one destination passes: a shared pause (a destination said
//! "wait") and a proactive rate limit (GCRA), so that no worker sends while another has
//! been told to back off.

use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::RateLimit;

pub struct Gate {
    paused_until: Mutex<Option<Instant>>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Gate {
    pub fn new(rate_limit: Option<RateLimit>) -> Self {
        let limiter = rate_limit.map(|r| {
            let burst = NonZeroU32::new(r.requests).expect("checked by config");
            let period = r.per / r.requests;
            let quota = Quota::with_period(period.max(std::time::Duration::from_nanos(1)))
                .expect("non-zero period")
                .allow_burst(burst);
            RateLimiter::direct(quota)
        });
        Gate {
            paused_until: Mutex::new(None),
            limiter,
        }
    }

    /// Waits until a request may leave: no pause in force and the rate limit allows it.
    pub async fn admit(&self) {
        loop {
            self.wait_out_pause().await;
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            // A pause may have begun while this worker waited on the rate limit.
            if self.pause_remaining().is_none() {
                return;
            }
        }
    }

    /// Stops every request until `until`. A shorter pause never cuts a longer one short.
    pub fn pause_until(&self, until: Instant) {
        let mut paused = self.paused_until.lock().unwrap();
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// When the current pause ends, if one is in force.
    pub fn pause_remaining(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().unwrap();
        paused.filter(|p| *p > Instant::now())
    }

    async fn wait_out_pause(&self) {
        while let Some(until) = self.pause_remaining() {
            tokio::time::sleep_until(until).await;
        }
    }
}
