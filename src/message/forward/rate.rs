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
    /// Validation keeps the rate at 0.01 or more; a rate whose interval no
    /// `Duration` holds (0, tiny, negative, NaN) refuses every send rather
    /// than panic.
    pub fn new(rate: f64, max_wait: Duration) -> RateLimiter {
        RateLimiter {
            per_recipient: Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX),
            max_wait,
            booked_until: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `recipients` may be sent; `false` if that would take longer than the allowed wait.
    pub async fn acquire(&self, recipients: usize) -> bool {
        let recipients = u32::try_from(recipients.max(1)).unwrap_or(u32::MAX);
        let wait = {
            let mut booked = self.booked_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // Idle time refills the bucket, but only up to the burst. A cost
            // past what an Instant can hold is a wait past any allowed one.
            let done = self
                .per_recipient
                .checked_mul(recipients)
                .and_then(|cost| (*booked).max(now).checked_add(cost));
            let Some(done) = done else {
                return false;
            };
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
    async fn rates_no_duration_holds_refuse_instead_of_panicking() {
        for rate in [1e-300, 0.0, -1.0, f64::NAN, f64::MIN_POSITIVE, 5e-324] {
            let limiter = RateLimiter::new(rate, Duration::from_secs(5));
            assert!(!limiter.acquire(1).await, "{rate}");
            assert!(!limiter.acquire(usize::MAX).await, "{rate}");
        }
        // Huge rates cost nothing: everything goes at once.
        let limiter = RateLimiter::new(f64::MAX, Duration::ZERO);
        assert!(limiter.acquire(usize::MAX).await);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let limiter = RateLimiter::new(10.0, Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(limiter.acquire(10).await);
        assert!(!limiter.acquire(1).await);
    }
}
