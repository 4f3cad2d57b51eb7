//! `ses.max-send-rate`: a token bucket in recipients per second, because SES
//! counts each recipient against the account's sending rate.
//!
//! It is kept as "the time the bucket is next empty" (virtual scheduling): a
//! send of n recipients books n / rate seconds. A message that would have to
//! wait longer than the allowed wait is refused at once (451 4.7.0) instead of
//! holding a Postfix connection: Postfix retries it later.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Burst allowance: one second's worth of recipients can go at once.
const BURST: Duration = Duration::from_secs(1);

/// A shared recipients-per-second limiter.
#[derive(Debug)]
pub struct RateLimiter {
    per_recipient: Duration,
    max_wait: Duration,
    /// The instant at which everything booked so far has been paid for.
    booked_until: Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` recipients per second (> 0); a send waits at most `max_wait`.
    pub fn new(rate: f64, max_wait: Duration) -> RateLimiter {
        RateLimiter {
            per_recipient: Duration::from_secs_f64(1.0 / rate),
            max_wait,
            booked_until: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `recipients` may be sent; `false` if that would take longer than the allowed wait.
    pub async fn acquire(&self, recipients: usize) -> bool {
        let cost = self.per_recipient * recipients.max(1) as u32;
        let wait = {
            let mut booked = self.booked_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // Idle time refills the bucket, but only up to the burst.
            let done = (*booked).max(now) + cost;
            let wait = done.saturating_duration_since(now + BURST);
            if wait > self.max_wait {
                return false;
            }
            *booked = done;
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces_then_refuses() {
        let limiter = RateLimiter::new(10.0, Duration::from_secs(2));
        let t0 = Instant::now();
        // One second's worth goes at once.
        assert!(limiter.acquire(10).await);
        assert_eq!(Instant::now(), t0);
        // The next 10 recipients wait one second.
        assert!(limiter.acquire(10).await);
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
        // 30 more would need 3 s of waiting: refused, and nothing booked.
        assert!(!limiter.acquire(30).await);
        assert!(limiter.acquire(5).await);
        assert_eq!(Instant::now() - t0, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let limiter = RateLimiter::new(10.0, Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(limiter.acquire(10).await);
        assert!(!limiter.acquire(1).await);
    }
}
