//! What makes a datagram "at most once" and a flood cheap: the seen set of
//! `(key_id, nonce)` fingerprints, the reply cache that answers a
//! retransmission, and the budget of strangers (datagrams that fail the
//! checks) that pauses reading when a flood spends it. Pure bookkeeping on
//! the clocks it is given: no sockets. Imports nothing from the server.

use crate::proto::datagram;
use log::warn;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The unit of the strangers' budget (`udp.max_rejects` a second).
pub const SLICE: Duration = Duration::from_millis(100);
/// How often the "reading paused" warning may come.
const PAUSE_WARN_EVERY: Duration = Duration::from_secs(10);

/// Whether a line rate-limited to one per `every` may go out at `now`
/// (the first always may); if so, `last` becomes `now`.
pub fn due(last: &mut Option<Instant>, now: Instant, every: Duration) -> bool {
    if last.is_some_and(|t| now < t + every) {
        return false;
    }
    *last = Some(now);
    true
}

/// The budget of datagrams that fail the checks (malformed, unknown key id,
/// wrong tag): a tenth of `udp.max_rejects` (rounded up) per `SLICE`, then
/// reading pauses until the slice ends.
#[derive(Default)]
pub struct Strangers {
    slice_start: Option<Instant>,
    used: usize,
    pub paused_until: Option<Instant>,
    /// Slices that ran out, since the last warning.
    pauses: u64,
    warned: Option<Instant>,
}

impl Strangers {
    /// Counts one failed datagram at `now`; true when the slice's budget is
    /// spent and reading must pause (until `paused_until`).
    pub fn count(&mut self, now: Instant, per_second: usize) -> bool {
        let start = match self.slice_start {
            Some(t) if now < t + SLICE => t,
            _ => {
                self.used = 0;
                self.slice_start = Some(now);
                now
            }
        };
        self.used += 1;
        if self.used < per_second.div_ceil(10) {
            return false;
        }
        self.paused_until = Some(start + SLICE);
        self.pauses += 1;
        if due(&mut self.warned, now, PAUSE_WARN_EVERY) {
            warn!(
                "udp: more than {per_second} datagrams a second fail the checks (udp.max_rejects); reading pauses until the end of each {} ms that fills ({} times since the last warning)",
                SLICE.as_millis(),
                self.pauses
            );
            self.pauses = 0;
        }
        true
    }

    /// Whether reading is paused at `now`; a pause that has ended is cleared.
    pub fn paused(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(t) if now < t => true,
            Some(_) => {
                self.paused_until = None;
                false
            }
            None => false,
        }
    }
}

/// `(key_id, nonce)` pairs within their window, as fingerprints.
#[derive(Default)]
pub struct Seen {
    pub set: HashSet<u128>,
    /// (monotonic expiry in ms since `Udp::epoch`, ts, fingerprint), soonest first.
    expiry: BinaryHeap<Reverse<(u64, i64, u128)>>,
}

impl Seen {
    /// Forgets pairs whose `ts` is out of the window on both clocks.
    pub fn purge(&mut self, now_ms: u64, now_wall: i64, window: i64) {
        while let Some(Reverse((at, ts, fp))) = self.expiry.peek().copied() {
            if at > now_ms || now_wall <= ts.saturating_add(window) {
                break;
            }
            self.expiry.pop();
            self.set.remove(&fp);
        }
    }

    pub fn insert(&mut self, fp: u128, ts: i64, now_ms: u64, now_wall: i64, window: i64) {
        let left = ts.saturating_add(window).saturating_sub(now_wall).max(0) as u64;
        let at = now_ms.saturating_add(left.saturating_add(1).saturating_mul(1000));
        if self.set.insert(fp) {
            self.expiry.push(Reverse((at, ts, fp)));
        }
    }
}

pub struct Cached {
    pub reply: Vec<u8>,
    pub peer: SocketAddr,
    /// Monotonic ms (since `Udp::epoch`) after which it may go.
    pub until: u64,
}

/// Replies by fingerprint, oldest evicted first.
#[derive(Default)]
pub struct Cache {
    pub map: HashMap<u128, Cached>,
    order: VecDeque<u128>,
    bytes: usize,
}

impl Cache {
    fn evict_oldest(&mut self) {
        if let Some(fp) = self.order.pop_front() {
            if let Some(c) = self.map.remove(&fp) {
                self.bytes -= c.reply.len();
            }
        }
    }

    pub fn purge(&mut self, now_ms: u64) {
        while let Some(fp) = self.order.front() {
            if self.map.get(fp).is_some_and(|c| c.until > now_ms) {
                break;
            }
            self.evict_oldest();
        }
    }

    pub fn insert(&mut self, fp: u128, c: Cached, max: usize, max_bytes: usize) {
        if c.reply.len() > max_bytes || max == 0 {
            return;
        }
        while !self.order.is_empty() && (self.map.len() >= max || self.bytes + c.reply.len() > max_bytes) {
            self.evict_oldest();
        }
        self.bytes += c.reply.len();
        self.order.push_back(fp);
        self.map.insert(fp, c);
    }
}

/// The seen set's key for `(key_id, nonce)`: 128 bits of a salted SHA-256.
pub fn fingerprint(salt: &[u8; 32], key_id: &str, nonce: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key_id.as_bytes());
    h.update([0]);
    h.update(datagram::nonce_bytes(nonce));
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 30;

    #[test]
    fn the_seen_set_forgets_a_nonce_only_once_its_ts_is_out_of_the_window_on_both_clocks() {
        let mut s = Seen::default();
        let (t0, ms0) = (1_000_000, 5_000);
        s.insert(1, t0, ms0, t0, W);
        s.insert(2, t0 + W, ms0, t0, W);
        s.insert(1, t0, ms0, t0, W);
        assert_eq!((s.set.len(), s.expiry.len()), (2, 2), "inserted once");
        // The wall clock is past ts + window, but the monotonic clock is not:
        // a clock stepped forward lets nothing back in.
        s.purge(ms0 + 1000, t0 + W + 1, W);
        assert!(s.set.contains(&1));
        s.purge(ms0 + (W as u64 + 1) * 1000, t0 + W + 1, W);
        assert!(!s.set.contains(&1) && s.set.contains(&2));
        // A clock stepped back keeps it, monotonic time or not.
        s.purge(u64::MAX, t0 + 2 * W, W);
        assert!(s.set.contains(&2));
        s.purge(u64::MAX, t0 + 2 * W + 1, W);
        assert!(s.set.is_empty() && s.expiry.is_empty());
    }

    fn cached(n: usize, until: u64) -> Cached {
        Cached { reply: vec![0; n], peer: SocketAddr::from(([127, 0, 0, 1], 9)), until }
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_bytes_oldest_out_first() {
        let mut c = Cache::default();
        for fp in 0..10 {
            c.insert(fp, cached(100, 50), 4, 1000);
        }
        assert_eq!(c.order, [6, 7, 8, 9]);
        assert_eq!(c.bytes, 400);
        c.insert(10, cached(901, 60), 4, 1000);
        assert_eq!((c.order.iter().copied().collect::<Vec<_>>(), c.bytes), (vec![10], 901));
        c.insert(11, cached(1001, 60), 4, 1000);
        assert!(!c.map.contains_key(&11), "a reply larger than the cache is not cached");
        c.insert(12, cached(1, 60), 0, 1000);
        assert!(!c.map.contains_key(&12), "cache_max 0: nothing is cached");
        c.purge(59);
        assert!(c.map.contains_key(&10));
        c.purge(60);
        assert!(c.map.is_empty() && c.order.is_empty() && c.bytes == 0);
    }

    #[test]
    fn strangers_past_the_budget_pause_reading_until_the_slice_ends() {
        let mut s = Strangers::default();
        let t0 = Instant::now();
        assert!(!s.paused(t0));
        for i in 0..1999 {
            assert!(!s.count(t0 + Duration::from_millis(i % 90), 20_000), "budget spent early at {i}");
        }
        assert!(s.count(t0 + Duration::from_millis(95), 20_000));
        assert_eq!(s.paused_until, Some(t0 + SLICE));
        assert!(s.paused(t0 + Duration::from_millis(99)));
        assert!(!s.paused(t0 + SLICE));
        assert_eq!(s.paused_until, None);
        // A new slice starts with a full budget.
        assert!(!s.count(t0 + SLICE + Duration::from_millis(1), 20_000));
        assert_eq!(s.used, 1);
    }

    #[test]
    fn strangers_spread_over_slices_never_pause() {
        let mut s = Strangers::default();
        let t0 = Instant::now();
        // Just under the rate, for ten seconds.
        for k in 0..100u32 {
            for _ in 1..2000 {
                assert!(!s.count(t0 + SLICE * k, 20_000));
            }
        }
        assert_eq!(s.pauses, 0);
        // A rate under ten a second still lets one through each slice.
        let mut s = Strangers::default();
        assert!(s.count(t0, 1));
        assert_eq!(s.paused_until, Some(t0 + SLICE));
    }
}
