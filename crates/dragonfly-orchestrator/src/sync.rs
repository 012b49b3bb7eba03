//! Small blocking primitives the stages share.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A wake-up call between threads: `wait` returns after `notify` or a
/// timeout, whichever comes first.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    flag: Mutex<bool>,
    cvar: Condvar,
}

impl Signal {
    pub(crate) fn notify(&self) {
        *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cvar.notify_all();
    }

    pub(crate) fn wait(&self, timeout: Duration) {
        let flag = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut flag, _) =
            self.cvar.wait_timeout_while(flag, timeout, |set| !*set).unwrap_or_else(|e| e.into_inner());
        *flag = false;
    }
}

/// A counting budget (bytes held by downloads, scans in flight): `acquire`
/// waits until enough is free.
#[derive(Debug)]
pub(crate) struct Budget {
    available: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    pub(crate) fn new(total: u64) -> Self {
        Budget { available: Mutex::new(total), freed: Condvar::new() }
    }

    pub(crate) fn acquire(&self, n: u64) {
        let mut available = self.available.lock().unwrap_or_else(|e| e.into_inner());
        while *available < n {
            available = self.freed.wait(available).unwrap_or_else(|e| e.into_inner());
        }
        *available -= n;
    }

    pub(crate) fn release(&self, n: u64) {
        *self.available.lock().unwrap_or_else(|e| e.into_inner()) += n;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn budget_blocks_until_released() {
        let budget = Arc::new(Budget::new(10));
        budget.acquire(8);
        let other = Arc::clone(&budget);
        let waiter = std::thread::spawn(move || {
            other.acquire(5);
            true
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        budget.release(8);
        assert!(waiter.join().unwrap());
    }
}
