//! A shutdown flag that sleeping threads can wait on.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cloneable handle: `trigger` asks every part of the node to stop leasing
/// and wind down; sleeps made through [`Shutdown::sleep`] end at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown (idempotent; the first call's time is kept).
    pub fn trigger(&self) {
        let (lock, cvar) = &*self.inner;
        let mut at = lock.lock().unwrap_or_else(|e| e.into_inner());
        at.get_or_insert_with(Instant::now);
        cvar.notify_all();
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.triggered_at().is_some()
    }

    /// When shutdown started.
    pub fn triggered_at(&self) -> Option<Instant> {
        *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether shutdown started more than `grace` ago.
    pub fn is_past(&self, grace: Duration) -> bool {
        self.time_left(grace).is_some_and(|left| left.is_zero())
    }

    /// Once shutdown has started: how much of `grace` is left.
    pub fn time_left(&self, grace: Duration) -> Option<Duration> {
        let at = self.triggered_at()?;
        Some((at + grace).saturating_duration_since(Instant::now()))
    }

    /// Sleeps for `duration` or until shutdown starts; returns true if
    /// shutdown has started.
    pub fn sleep(&self, duration: Duration) -> bool {
        let (lock, cvar) = &*self.inner;
        let deadline = Instant::now() + duration;
        let mut at = lock.lock().unwrap_or_else(|e| e.into_inner());
        while at.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            at = cvar.wait_timeout(at, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_sleepers() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.sleep(Duration::from_millis(1)));
        let other = shutdown.clone();
        let sleeper = std::thread::spawn(move || other.sleep(Duration::from_secs(600)));
        // Let the sleeper block first, so the wake-up itself is tested.
        std::thread::sleep(Duration::from_millis(50));
        shutdown.trigger();
        assert!(sleeper.join().unwrap());
        assert!(shutdown.is_triggered());
        assert!(shutdown.is_past(Duration::ZERO));
        assert!(!shutdown.is_past(Duration::from_secs(600)));
        assert!(Shutdown::new().time_left(Duration::ZERO).is_none());
    }
}
