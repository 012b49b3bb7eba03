//! Fault injection: which requests fail, and how.

use std::time::Duration;

use crate::rng::Rng;

/// A group of server endpoints, used to aim faults and to count requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /jobs`.
    Jobs,
    /// `GET /rules`.
    Rules,
    /// `PUT /package`.
    Package,
    /// The token endpoints: `POST /oauth/token` and the Cloudflare login `GET /`.
    Token,
    /// Distribution downloads under `/packages/`.
    Download,
    /// The optional result cache: `POST /scan-cache/lookup` and `/write`.
    ScanCache,
    /// Every endpoint above (for faults; `/healthz` is never faulted).
    Any,
}

impl Endpoint {
    /// Whether a fault aimed at `self` applies to a request for `endpoint`.
    pub(crate) fn covers(self, endpoint: Endpoint) -> bool {
        self == Endpoint::Any || self == endpoint
    }
}

/// What an injected fault does to a request.
///
/// All actions but [`FaultAction::DropResponse`] act before the server
/// looks at the request: it is neither authenticated nor applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Answer with this status code and a JSON error body.
    Status(u16),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Send a truncated, corrupt response in place of the real one; the
    /// client sees a broken connection. The request is not applied.
    Drop,
    /// Apply the request (lease the jobs, store the result, ...) and then
    /// break the response as [`FaultAction::Drop`] does: the client cannot
    /// tell whether its request took effect.
    DropResponse,
}

/// One fault-injection rule, see [`FakeServer::add_fault`](super::FakeServer::add_fault).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The requests this fault applies to.
    pub endpoint: Endpoint,
    /// What happens to a request the fault hits.
    pub action: FaultAction,
    /// Probability (0 to 1) that a matching request is hit; drawn from the
    /// server's seeded PRNG, so a sequential run repeats exactly.
    pub rate: f64,
    /// Hit at most this many requests (`None`: no limit).
    pub limit: Option<u32>,
}

impl Fault {
    /// A fault that hits every matching request (rate 1, no limit).
    pub fn new(endpoint: Endpoint, action: FaultAction) -> Fault {
        Fault { endpoint, action, rate: 1.0, limit: None }
    }

    /// Sets the probability that a matching request is hit.
    #[must_use]
    pub fn with_rate(mut self, rate: f64) -> Fault {
        self.rate = rate;
        self
    }

    /// Hits at most `limit` requests.
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Fault {
        self.limit = Some(limit);
        self
    }
}

/// A fault with the number of times it fired.
#[derive(Debug)]
struct Armed {
    fault: Fault,
    fired: u32,
}

/// What the faults decided for one request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// Total delay to apply before handling.
    pub delay: Duration,
    /// A status, drop or response drop, if one fired (the first one wins).
    pub action: Option<FaultAction>,
    /// How many faults fired.
    pub fired: u32,
}

/// The active faults and the PRNG that decides when they fire.
#[derive(Debug)]
pub(crate) struct Faults {
    armed: Vec<Armed>,
    rng: Rng,
}

/// Seed used until [`Faults::reseed`] is called.
const DEFAULT_SEED: u64 = 0x0d5a_f1e5_eed0_0001;

impl Faults {
    pub fn new() -> Faults {
        Faults { armed: Vec::new(), rng: Rng::new(DEFAULT_SEED) }
    }

    pub fn add(&mut self, fault: Fault) {
        self.armed.push(Armed { fault, fired: 0 });
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }

    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Decides the fate of one request to `endpoint`. Delays add up; the
    /// first status or drop that fires ends the evaluation.
    pub fn decide(&mut self, endpoint: Endpoint) -> Verdict {
        let mut verdict = Verdict::default();
        for armed in &mut self.armed {
            if !armed.fault.endpoint.covers(endpoint) {
                continue;
            }
            if armed.fault.limit.is_some_and(|limit| armed.fired >= limit) {
                continue;
            }
            // A NaN rate never fires.
            let hit = self.rng.next_f64() < armed.fault.rate;
            if !hit {
                continue;
            }
            armed.fired += 1;
            verdict.fired += 1;
            match armed.fault.action {
                FaultAction::Delay(delay) => verdict.delay = verdict.delay.saturating_add(delay),
                action => {
                    verdict.action = Some(action);
                    break;
                }
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_order_are_respected() {
        let mut faults = Faults::new();
        faults.add(Fault::new(Endpoint::Rules, FaultAction::Delay(Duration::from_millis(5))));
        faults.add(Fault::new(Endpoint::Any, FaultAction::Status(500)).with_limit(1));
        faults.add(Fault::new(Endpoint::Jobs, FaultAction::Drop));

        let first = faults.decide(Endpoint::Rules);
        assert_eq!(first.delay, Duration::from_millis(5));
        assert_eq!(first.action, Some(FaultAction::Status(500)));
        let second = faults.decide(Endpoint::Rules);
        assert_eq!(second.action, None);
        assert_eq!(second.fired, 1);
        assert_eq!(faults.decide(Endpoint::Jobs).action, Some(FaultAction::Drop));
        assert_eq!(faults.decide(Endpoint::Package), Verdict::default());
    }

    #[test]
    fn rate_is_deterministic_per_seed() {
        let run = |seed| {
            let mut faults = Faults::new();
            faults.reseed(seed);
            faults.add(Fault::new(Endpoint::Jobs, FaultAction::Status(503)).with_rate(0.3));
            (0..200).map(|_| faults.decide(Endpoint::Jobs).action.is_some()).collect::<Vec<_>>()
        };
        let hits = run(7);
        assert_eq!(hits, run(7));
        let count = hits.iter().filter(|hit| **hit).count();
        assert!((30..=90).contains(&count), "{count} hits of 200 at rate 0.3");
    }

    #[test]
    fn rate_zero_never_fires() {
        let mut faults = Faults::new();
        faults.add(Fault::new(Endpoint::Any, FaultAction::Drop).with_rate(0.0));
        assert!((0..100).all(|_| faults.decide(Endpoint::Download).action.is_none()));
    }
}
