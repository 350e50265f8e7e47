//! [`Entry`]: what the cache stores for a key, and its wire form in Redis.
//!
//! Besides the value, an entry carries the two numbers XFetch needs: when it logically
//! expires, and how long it took to compute (delta). Redis's own TTL on the key is longer
//! (the stale grace), so an entry past its logical expiry can still be served while it is
//! reloaded or when reloading fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;

/// A cached answer: a value, or the remembered fact that there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `None`: the source said the key does not exist (a negative entry).
    pub value: Option<Bytes>,
    /// Logical expiry, in milliseconds since the Unix epoch. Wall-clock time, because
    /// entries are shared between processes through Redis.
    pub expires_at: u64,
    /// How long computing the value took, in milliseconds.
    pub delta: u32,
}

/// Version 1 of the encoding: `[1][kind][expires_at: u64 BE][delta: u32 BE][payload]`.
/// A changed layout gets a new version byte; an entry that does not decode is a miss.
const VERSION: u8 = 1;
const KIND_VALUE: u8 = 0;
const KIND_ABSENT: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 4;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Entry {
    pub fn new(value: Option<Bytes>, ttl: Duration, delta: Duration, now: u64) -> Self {
        Self {
            value,
            expires_at: now.saturating_add(millis(ttl)),
            delta: u32::try_from(delta.as_millis()).unwrap_or(u32::MAX),
        }
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Whether a read at `now` should recompute this (still fresh) entry early: XFetch
    /// (Vattani, Chierichetti, Lowenstein, VLDB 2015). Each read refreshes with a
    /// probability that grows as expiry nears and with how slow the value is to compute:
    /// `now - delta * beta * ln(u) >= expires_at`, `u` uniform in (0, 1]. One of many
    /// concurrent readers starts the refresh a little before expiry, so none of them waits
    /// on a miss.
    pub fn should_refresh_early(&self, now: u64, beta: f64) -> bool {
        if beta <= 0.0 || self.delta == 0 {
            return false;
        }
        let u: f64 = 1.0 - rand::rng().random::<f64>();
        let head_start = -(f64::from(self.delta)) * beta * u.ln();
        now as f64 + head_start >= self.expires_at as f64
    }

    pub fn encode(&self) -> Bytes {
        let payload = self.value.as_ref().map_or(0, Bytes::len);
        let mut out = BytesMut::with_capacity(HEADER + payload);
        out.put_u8(VERSION);
        out.put_u8(if self.value.is_some() {
            KIND_VALUE
        } else {
            KIND_ABSENT
        });
        out.put_u64(self.expires_at);
        out.put_u32(self.delta);
        if let Some(value) = &self.value {
            out.put_slice(value);
        }
        out.freeze()
    }

    pub fn decode(raw: Bytes) -> Option<Self> {
        if raw.len() < HEADER || raw[0] != VERSION {
            return None;
        }
        let expires_at = u64::from_be_bytes(raw[2..10].try_into().ok()?);
        let delta = u32::from_be_bytes(raw[10..14].try_into().ok()?);
        let value = match raw[1] {
            KIND_VALUE => Some(raw.slice(HEADER..)),
            KIND_ABSENT if raw.len() == HEADER => None,
            _ => return None,
        };
        Some(Self {
            value,
            expires_at,
            delta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_and_absence() {
        let now = now_ms();
        for value in [
            Some(Bytes::from_static(b"{\"id\":1}")),
            Some(Bytes::new()),
            None,
        ] {
            let entry = Entry::new(
                value,
                Duration::from_secs(5),
                Duration::from_millis(12),
                now,
            );
            assert_eq!(Entry::decode(entry.encode()), Some(entry));
        }
    }

    #[test]
    fn refuses_foreign_or_truncated_bytes() {
        assert_eq!(Entry::decode(Bytes::from_static(b"{\"id\":1}")), None);
        assert_eq!(Entry::decode(Bytes::from_static(&[1, 0, 0])), None);
        let mut absent_with_payload = Entry::new(None, Duration::from_secs(1), Duration::ZERO, 0)
            .encode()
            .to_vec();
        absent_with_payload.push(b'x');
        assert_eq!(Entry::decode(Bytes::from(absent_with_payload)), None);
    }

    #[test]
    fn xfetch_refreshes_more_often_as_expiry_nears() {
        let now = 1_000_000;
        let entry = Entry {
            value: None,
            expires_at: now + 1_000,
            delta: 100,
        };
        let rate = |at: u64| {
            (0..10_000)
                .filter(|_| entry.should_refresh_early(at, 1.0))
                .count()
        };
        // 1 s before expiry with a 100 ms compute: P = e^-10, practically never.
        assert!(rate(now) < 5);
        // 100 ms before: P = e^-1, about 37 %.
        let close = rate(now + 900);
        assert!((3_000..4_400).contains(&close), "{close}");
        // Past expiry it always refreshes; beta 0 never does.
        assert_eq!(rate(now + 1_000), 10_000);
        assert!(!entry.should_refresh_early(now + 999, 0.0));
    }
}
