//! [`Entry`]: what the cache stores for a key, and its wire form in Redis.
//!
//! Besides the value, an entry carries the two numbers XFetch needs: when it logically
//! expires, and how long it took to compute (delta). Redis's own TTL on the key is longer
//! (the stale grace), so an entry past its logical expiry can still be served while it is
//! reloaded or when reloading fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;

use crate::codec::{Codec, CodecError};

/// A cached answer: a value, or the remembered fact that there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<V> {
    /// `None`: the source said the key does not exist (a negative entry).
    pub value: Option<V>,
    /// Logical expiry, in milliseconds since the Unix epoch. Wall-clock time, because
    /// entries are shared between processes through Redis.
    pub expires_at: u64,
    /// How long computing the value took, in milliseconds.
    pub delta: u32,
}

/// Version 1 of the encoding: `[1][kind][expires_at: u64 BE][delta: u32 BE][payload]`, the
/// payload written by the group's codec. A changed layout gets a new version byte; an entry
/// that does not decode is a miss.
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

impl<V> Entry<V> {
    pub fn new(value: Option<V>, ttl: Duration, delta: Duration, now: u64) -> Self {
        Self {
            value,
            expires_at: now.saturating_add(millis(ttl)),
            delta: u32::try_from(delta.as_millis()).unwrap_or(u32::MAX),
        }
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// The same entry with its value changed by `f` (the expiry and delta stay).
    pub fn map<W>(self, f: impl FnOnce(V) -> W) -> Entry<W> {
        Entry {
            value: self.value.map(f),
            expires_at: self.expires_at,
            delta: self.delta,
        }
    }

    /// Whether a read at `now` should recompute this (still fresh) entry early: XFetch
    /// (Vattani, Chierichetti, Lowenstein, VLDB 2015). Each read refreshes with a
    /// probability that grows as expiry nears and with how slow the value is to compute:
    /// `now - delta * beta * ln(u) >= expires_at`, `u` uniform in (0, 1]. One of many
    /// concurrent readers starts the refresh a little before expiry, so none of them waits
    /// on a miss.
    pub fn should_refresh_early(&self, now: u64, beta: f64) -> bool {
        let u: f64 = 1.0 - rand::rng().random::<f64>();
        self.refresh_due(now, beta, u)
    }

    /// XFetch's rule for one read at `now`, with its uniform draw `u` in (0, 1].
    pub fn refresh_due(&self, now: u64, beta: f64, u: f64) -> bool {
        if beta <= 0.0 || self.delta == 0 {
            return false;
        }
        let head_start = -(f64::from(self.delta)) * beta * u.ln();
        now as f64 + head_start >= self.expires_at as f64
    }
}

impl<V: 'static> Entry<V> {
    /// The wire form, the value written by `codec`.
    pub fn encode(&self, codec: &dyn Codec<V>) -> Result<Bytes, CodecError> {
        let mut out = Vec::with_capacity(HEADER + 256);
        out.push(VERSION);
        out.push(if self.value.is_some() {
            KIND_VALUE
        } else {
            KIND_ABSENT
        });
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.delta.to_be_bytes());
        if let Some(value) = &self.value {
            codec.encode(value, &mut out)?;
        }
        Ok(Bytes::from(out))
    }

    /// Reads the wire form; `None` if it is not one (foreign, truncated, or a value the
    /// codec refuses).
    pub fn decode(raw: Bytes, codec: &dyn Codec<V>) -> Option<Self> {
        if raw.len() < HEADER || raw[0] != VERSION {
            return None;
        }
        let expires_at = u64::from_be_bytes(raw[2..10].try_into().ok()?);
        let delta = u32::from_be_bytes(raw[10..14].try_into().ok()?);
        let value = match raw[1] {
            KIND_VALUE => Some(codec.decode(raw.slice(HEADER..)).ok()?),
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
    use crate::codec::Raw;

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
            assert_eq!(
                Entry::decode(entry.encode(&Raw).unwrap(), &Raw),
                Some(entry)
            );
        }
    }

    #[test]
    fn refuses_foreign_or_truncated_bytes() {
        assert_eq!(Entry::decode(Bytes::from_static(b"{\"id\":1}"), &Raw), None);
        assert_eq!(Entry::decode(Bytes::from_static(&[1, 0, 0]), &Raw), None);
        let mut absent_with_payload =
            Entry::<Bytes>::new(None, Duration::from_secs(1), Duration::ZERO, 0)
                .encode(&Raw)
                .unwrap()
                .to_vec();
        absent_with_payload.push(b'x');
        assert_eq!(Entry::decode(Bytes::from(absent_with_payload), &Raw), None);
    }

    #[test]
    fn xfetch_refreshes_more_often_as_expiry_nears() {
        let now = 1_000_000;
        let entry: Entry<Bytes> = Entry {
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

    /// XFetch as the paper states it, simulated: reads arrive as a Poisson process, each
    /// applies the rule with its own draw, and every read that says "recompute" before the
    /// new value lands (one `delta` after the first) starts a recomputation of its own. The
    /// expected number per expiry is e^(1/beta): the first trigger comes when the rule's
    /// cumulative intensity reaches an Exp(1) draw, and the `delta` that follows adds
    /// e^(1/beta) - 1 times that on average. Seeded, so the run is the same every time.
    #[test]
    fn uncoordinated_xfetch_recomputes_e_to_the_one_over_beta_times_per_expiry() {
        use rand::SeedableRng;
        use rand::rngs::StdRng;

        const DELTA_MS: u32 = 1_000;
        const READS_PER_MS: f64 = 0.05; // 50 reads a second: 50 per delta
        const EXPIRIES: usize = 1_000;
        let expires_at: u64 = 1_000_000;
        let entry: Entry<Bytes> = Entry {
            value: None,
            expires_at,
            delta: DELTA_MS,
        };
        let mut rng = StdRng::seed_from_u64(20261207);
        for beta in [1.0_f64, 1.5, 2.0] {
            let expected = (1.0 / beta).exp(); // 2.72, 1.95, 1.65
            let mut recomputations = 0usize;
            for _ in 0..EXPIRIES {
                // From 12 * beta deltas before expiry: the reads before that recompute with
                // a total probability of 50 * beta * e^-12, under 0.1 %.
                let mut at = expires_at as f64 - 12.0 * beta * f64::from(DELTA_MS);
                let mut lands = f64::INFINITY;
                loop {
                    let gap: f64 = 1.0 - rng.random::<f64>();
                    at += -gap.ln() / READS_PER_MS;
                    if at >= lands {
                        break;
                    }
                    let u = 1.0 - rng.random::<f64>();
                    if entry.refresh_due(at as u64, beta, u) {
                        recomputations += 1;
                        if lands.is_infinite() {
                            lands = at + f64::from(DELTA_MS);
                        }
                    }
                }
            }
            let mean = recomputations as f64 / EXPIRIES as f64;
            assert!(
                (mean - expected).abs() < expected * 0.05,
                "beta {beta}: {mean:.3} recomputations per expiry, expected about {expected}"
            );
        }
    }
}
