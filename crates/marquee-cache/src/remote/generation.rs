//! Generations: how a write's eviction defeats a load that read the source before it.
//!
//! The race: a load reads the old data, a write commits and evicts the key, then the load
//! stores what it read; without a check that old value would be served until it expires.
//! So every eviction (and update) bumps the key's *generation*, a counter kept in Redis
//! under `{key}:generation`, and a load remembers the generation it started under (a
//! ticket, taken before it reads the source). Its store is a script that writes only
//! if the generation is still the same. The in-process tier has the same check with its
//! own marks (see `local`); `group::ticket` holds both. docs/cache.md ("Generations") says what this costs and what it
//! does not guard against.
//!
//! A generation lives for twice the group's longest entry life after its last bump, and a
//! load whose ticket is older than that life (once, not twice) does not store at all: the
//! generation it would be checked against may have expired and been reset, and a result
//! that old is not worth keeping anyway.

use std::sync::LazyLock;

use redis::Script;

use super::link::{RedisError, RedisLink};
use crate::bump::{AfterBump, HeldLease};

/// Reads the generation in `KEYS[1]` into `generation`. Anything that is not a number
/// counts as 0, so a damaged counter makes a bump rewrite it rather than fail (an eviction
/// that fails would leave the old value in place).
macro_rules! read {
    () => {
        "local generation = tonumber(redis.call('GET', KEYS[1])) or 0 "
    };
}

/// Bumps the generation in `KEYS[1]` and keeps it for `ARGV[2]` ms.
macro_rules! bump {
    () => {
        "generation = generation + 1 redis.call('SET', KEYS[1], generation, 'PX', ARGV[2]) "
    };
}

/// Sets `KEYS[2]` to `ARGV[2]` for `ARGV[3]` ms if the generation read is still `ARGV[1]`;
/// `stored` says whether it did.
macro_rules! set_if_generation {
    () => {
        "local stored = 0 if generation == tonumber(ARGV[1]) then \
         redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) stored = 1 end "
    };
}

/// Publishes `KEYS[2]` on the channel `ARGV[1]` (nothing when it is empty): a write's
/// announcement to every instance's L1, in the same script as the write, after it. (A
/// script may publish on a cluster too: the message reaches every node.)
macro_rules! announce {
    () => {
        "if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], KEYS[2]) end "
    };
}

// Every script runs by its SHA (EVALSHA); the redis crate loads it again after a restart.
static GENERATION: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(read!(), "return generation")));
// A load's lease (KEYS[3], ARGV[1] for ARGV[2] ms) and, if it was taken, the entry and its
// generation, read after it in the same script: what a lease holder checks first.
static LEASE_AND_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        read!(),
        "if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then ",
        "return {0, false, generation} end ",
        "return {1, redis.call('GET', KEYS[2]), generation}"
    ))
});
// SET KEYS[2] ARGV[2] PX ARGV[3] if the generation is still ARGV[1]; with the lease, then
// KEYS[3] deleted if it still holds ARGV[4] (a lease holder's store and release in one
// round trip). Either returns 1 if it stored.
static SET_IF_GENERATION: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(read!(), set_if_generation!(), "return stored")));
static SET_IF_GENERATION_AND_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        read!(),
        set_if_generation!(),
        "if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end ",
        "return stored"
    ))
});
// The value moves to KEYS[4] (RENAME: no copy of it goes over the wire) and lives there for
// ARGV[3] ms, unless that is 0; all four keys share the entry's hash tag, so one slot.
static BUMP_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        read!(),
        bump!(),
        "if tonumber(ARGV[3]) > 0 and redis.call('EXISTS', KEYS[2]) == 1 then ",
        "redis.call('RENAME', KEYS[2], KEYS[4]) redis.call('PEXPIRE', KEYS[4], ARGV[3]) ",
        "else redis.call('DEL', KEYS[2]) end ",
        "redis.call('DEL', KEYS[3]) ",
        announce!(),
        "return 1"
    ))
});
static BUMP_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        read!(),
        bump!(),
        "redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) ",
        announce!(),
        "return 1"
    ))
});

impl RedisLink {
    /// The generation of the key whose counter is `generation_key` (0 if it has none).
    pub(crate) async fn generation(&self, generation_key: &str) -> Result<u64, RedisError> {
        let generation: i64 = self.script(&GENERATION.key(generation_key)).await?;
        Ok(u64::try_from(generation).unwrap_or(0))
    }

    /// Takes `lease` for `token` (SET NX PX `ttl_ms`) and, if it was free, reads `key` and
    /// the generation in `generation_key` in the same round trip: `None` when another
    /// holder has the lease, else the entry (if any) and the generation.
    pub(crate) async fn lease_and_read(
        &self,
        lease: &str,
        token: &str,
        ttl_ms: u64,
        key: &str,
        generation_key: &str,
    ) -> Result<Option<(Option<Vec<u8>>, u64)>, RedisError> {
        let (taken, value, generation): (i64, Option<Vec<u8>>, i64) = self
            .script(
                LEASE_AND_READ
                    .key(generation_key)
                    .key(key)
                    .key(lease)
                    .arg(token)
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok((taken == 1).then(|| (value, u64::try_from(generation).unwrap_or(0))))
    }

    /// SET `key` `value` PX `ttl_ms`, only if `generation_key` still holds `generation`:
    /// `false` if an eviction or update came in between. With `release`, the same script
    /// then deletes the lease if it still holds the token, whether or not it stored.
    pub(crate) async fn set_px_if_generation(
        &self,
        generation_key: &str,
        generation: u64,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        release: Option<HeldLease<'_>>,
    ) -> Result<bool, RedisError> {
        let mut invocation = match release {
            Some(_) => SET_IF_GENERATION_AND_RELEASE.prepare_invoke(),
            None => SET_IF_GENERATION.prepare_invoke(),
        };
        invocation
            .key(generation_key)
            .key(key)
            .arg(generation)
            .arg(value)
            .arg(ttl_ms.max(1));
        if let Some(lease) = release {
            invocation.key(lease.key).arg(lease.token);
        }
        let stored: i64 = self.script(&invocation).await?;
        Ok(stored == 1)
    }

    /// Bumps the generation (kept for `mark_ms`) and then, atomically with the bump, deletes
    /// `key` and its lease (keeping the value under the retired key), or sets `key`: no store
    /// made under the old generation can land after it. Then, in the same script, publishes
    /// `key` on `announce_on` unless it is empty: every instance drops its L1 copy, and
    /// finds the write in Redis when it reads again.
    pub(crate) async fn bump_generation(
        &self,
        generation_key: &str,
        mark_ms: u64,
        key: &str,
        then: AfterBump<'_>,
        announce_on: &str,
    ) -> Result<(), RedisError> {
        let mut invocation = match then {
            AfterBump::Delete { .. } => BUMP_AND_DELETE.prepare_invoke(),
            AfterBump::Set { .. } => BUMP_AND_SET.prepare_invoke(),
        };
        invocation
            .key(generation_key)
            .key(key)
            .arg(announce_on)
            .arg(mark_ms.max(1));
        match then {
            AfterBump::Delete {
                lease,
                retired,
                retired_ms,
            } => invocation.key(lease).key(retired).arg(retired_ms),
            AfterBump::Set { value, ttl_ms } => invocation.arg(value).arg(ttl_ms.max(1)),
        };
        self.script::<i64>(&invocation).await.map(drop)
    }
}
