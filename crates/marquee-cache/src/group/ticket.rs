//! Tickets: how a write's eviction defeats a load that read the source before it.
//!
//! The race: a load reads the old data, a write commits and evicts the key, then the load
//! stores what it read; without a check that old value would be served until it expires.
//! So every eviction (and update) bumps the key's *generation*, a counter kept in Redis
//! under `{key}:generation`, and a load remembers the generation it started under (a
//! [`Ticket`], taken before it reads the source). Its store is a script that writes only
//! if the generation is still the same. The in-process tier has the same check with its
//! own marks (see `local`). docs/cache.md ("Generations") says what this costs and what it
//! does not guard against.
//!
//! A generation lives for twice the group's longest entry life after its last bump, and a
//! load whose ticket is older than that life (once, not twice) does not store at all: the
//! generation it would be checked against may have expired and been reset, and a result
//! that old is not worth keeping anyway.

use std::time::{Duration, Instant};

use crate::local;
use crate::policy::CachePolicy;

/// What a load remembers from before it read the source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The in-process tier's invalidation sequence.
    pub local: local::Ticket,
    /// The key's generation in Redis; `None` without Redis or when it could not be read:
    /// what is loaded is then kept in-process only.
    pub redis: Option<u64>,
    /// When the ticket was taken, before either of the above was read.
    pub taken: Instant,
}

impl Ticket {
    /// Whether what was read under this ticket may still be stored: the marks that would
    /// refuse it are kept for at least `life`.
    pub fn is_younger_than(&self, life: Duration) -> bool {
        self.taken.elapsed() < life
    }
}

/// Where `full`'s generation lives in Redis.
pub(crate) fn generation_key(full: &str) -> String {
    format!("{full}:generation")
}

/// Where `full`'s lease lives in Redis.
pub(crate) fn lease_key(full: &str) -> String {
    format!("{full}:lease")
}

/// Where `full`'s value goes when it is evicted, for a load that fails right after.
pub(crate) fn retired_key(full: &str) -> String {
    format!("{full}:retired")
}

/// How long a generation (and an in-process invalidation mark) is kept after its last
/// bump: twice the group's longest entry life, so that a store sent just before a load
/// reaches that life, and delayed on its way, still meets the mark.
pub(crate) fn mark_life(policy: &CachePolicy) -> Duration {
    policy.longest_life().saturating_mul(2)
}
