//! [`RedisView`]: the view in Redis, shared by every process, one script per operation.
//!
//! Each queue is four keys that share one hash tag, `{<id>}`, so that a script touching them
//! touches one cluster slot:
//!
//! - `<ns>:queue:{<id>}:built`: present once the queue has been rebuilt. Its absence (never
//!   built, or a Redis that restarted empty) is what [`Poll::Unknown`] reports.
//! - `…:waiting`: sorted set, member → join order. `ZRANK` is the number waiting ahead.
//! - `…:active`: sorted set, member → end of admission (ms).
//! - `…:seen`: sorted set, waiting member → last poll (ms).
//!
//! Every operation is one Lua script (EVALSHA; the redis crate loads it again after a
//! `NOSCRIPT`), so each is atomic and one round trip, except [`RedisView::rebuild`], which
//! writes into temporary keys in chunks and swaps them in with one script. Sorted-set
//! scores are doubles: join orders and times are exact up to 2^53.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use marquee_redis::{Connection, Connector, Timeouts};
use redis::{RedisError, Script};
use thread_local::ThreadLocal;

use crate::{Poll, RedisViewConfig, ViewError};

/// Members per command of a rebuild: large enough that 20,000 members take a few dozen
/// round trips, small enough that no single command holds Redis for long.
const REBUILD_CHUNK: usize = 1000;

/// How long a rebuild's temporary keys outlive its last write. Only a rebuild whose process
/// died before the swap needs it: its keys then go away by themselves.
const REBUILD_KEYS_TTL_MS: u64 = 60_000;

/// Numbers this process's rebuilds, so that two at once never share temporary keys.
static REBUILDS: AtomicU64 = AtomicU64::new(0);

/// KEYS: built, waiting, active, seen. ARGV: member, now.
/// Replies `{0}` unknown, `{1}` absent, `{2, position}` waiting, `{3, expires}` active.
static POLL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
        local expires = redis.call('ZSCORE', KEYS[3], ARGV[1])
        if expires and tonumber(expires) > tonumber(ARGV[2]) then
            return {3, tonumber(expires)}
        end
        local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
        if not rank then return {1} end
        redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
        return {2, rank + 1}
        ",
    )
});

/// KEYS: built, waiting, active, seen. ARGV: member, seq, now.
static ADD_WAITING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        local expires = redis.call('ZSCORE', KEYS[3], ARGV[1])
        if expires and tonumber(expires) > tonumber(ARGV[3]) then return 0 end
        redis.call('ZREM', KEYS[3], ARGV[1])
        redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
        redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
        return 1
        ",
    )
});

/// KEYS: built, waiting, active, seen. ARGV: member, expires, member, expires, ...
static ACTIVATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        for i = 1, #ARGV, 2 do
            redis.call('ZREM', KEYS[2], ARGV[i])
            redis.call('ZREM', KEYS[4], ARGV[i])
            redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
        end
        return 1
        ",
    )
});

/// KEYS: built, waiting, active, seen (removing does not need `built`: a queue that is not
/// built has no members). ARGV: members.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        for i = 1, #ARGV do
            redis.call('ZREM', KEYS[2], ARGV[i])
            redis.call('ZREM', KEYS[3], ARGV[i])
            redis.call('ZREM', KEYS[4], ARGV[i])
        end
        return 1
        ",
    )
});

/// KEYS: built, waiting, active, seen (unused). ARGV: now. Replies `{waiting, active}`.
static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
        return {redis.call('ZCARD', KEYS[2]),
                redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')}
        ",
    )
});

/// KEYS: built, waiting, active, seen, then the rebuild's waiting, active, seen (every
/// waiting member seen now) and two scratch keys. ARGV: expected waiting and active counts.
///
/// A waiting member keeps its old seen time: the old times of the members still waiting
/// (`kept`), plus now for the others (`fresh`, the difference). All of it server-side, in
/// sorted-set operations rather than a Lua loop over the members.
static SWAP_IN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('ZCARD', KEYS[5]) ~= tonumber(ARGV[1])
            or redis.call('ZCARD', KEYS[6]) ~= tonumber(ARGV[2]) then
            redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
            return redis.error_reply('rebuild incomplete: its temporary keys expired')
        end
        redis.call('ZINTERSTORE', KEYS[8], 2, KEYS[4], KEYS[5], 'WEIGHTS', 1, 0)
        redis.call('ZDIFFSTORE', KEYS[9], 2, KEYS[7], KEYS[8])
        redis.call('ZUNIONSTORE', KEYS[7], 2, KEYS[9], KEYS[8])
        redis.call('DEL', KEYS[8], KEYS[9])
        for i = 2, 4 do
            if redis.call('EXISTS', KEYS[i + 3]) == 1 then
                redis.call('RENAME', KEYS[i + 3], KEYS[i])
                redis.call('PERSIST', KEYS[i])
            else
                redis.call('DEL', KEYS[i])
            end
        end
        redis.call('SET', KEYS[1], '1')
        return 1
        ",
    )
});

/// Multiplexed, self-reconnecting connections; every operation bounded in time.
#[derive(Clone)]
pub(crate) struct RedisView {
    connection: Connection,
    /// The polls' connections: one per thread that polls, opened lazily on that thread's
    /// runtime, so that a poll's round trip stays on the thread that awaits it (a
    /// connection's driver is a task on the runtime that opened it; on the one shared
    /// connection, every poll from an HTTP worker crossed to the main runtime's thread and
    /// back). The other operations, rarer, stay on the shared connection.
    pollers: Arc<ThreadLocal<Connection>>,
    /// Makes the poll connections: standalone or cluster, with the poll's bound.
    connector: Connector,
    /// A second connection for rebuilds, with a longer bound: a rebuild moves the whole line
    /// (tens of thousands of members, and a swap script over all of them), which a poll's
    /// bound of a few tens of milliseconds cannot hold on a busy server. Kept apart so that
    /// a rebuild's long replies never sit in front of polls on one connection.
    bulk: Connection,
    /// The namespace and the poll's bound, as configured.
    config: RedisViewConfig,
    bulk_timeout: Duration,
    /// Seeded at random per process, so that two processes' rebuilds of one queue never
    /// share temporary keys.
    rebuild_ids: RandomState,
}

impl std::fmt::Debug for RedisView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisView")
            .field("config", &self.config)
            .field("bulk_timeout", &self.bulk_timeout)
            .finish_non_exhaustive()
    }
}

/// The keys of one queue, in the order the scripts take them.
struct QueueKeys {
    built: String,
    waiting: String,
    active: String,
    seen: String,
}

/// The bound on each step of a rebuild: twenty times a poll's, and at least 2 s.
fn bulk_timeout(response_timeout: Duration) -> Duration {
    (response_timeout * 20).max(Duration::from_secs(2))
}

async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ViewError> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ViewError::Timeout)?
        .map_err(unavailable)
}

fn unavailable(error: RedisError) -> ViewError {
    if error.is_timeout() {
        ViewError::Timeout
    } else {
        ViewError::Unavailable(error.to_string())
    }
}

impl RedisView {
    pub(crate) fn open(config: RedisViewConfig) -> Result<Self, ViewError> {
        let bulk_timeout = bulk_timeout(config.response_timeout);
        let connector = |response: Duration| {
            Connector::open(
                config.mode,
                &config.url,
                Timeouts {
                    connection: config.connection_timeout,
                    response,
                },
            )
            .map_err(|e| ViewError::Config(format!("redis url: {e}")))
        };
        let opened = |connector: &Connector| {
            connector
                .connection()
                .map_err(|e| ViewError::Config(e.to_string()))
        };
        let poll_connector = connector(config.response_timeout)?;
        let connection = opened(&poll_connector)?;
        let bulk = opened(&connector(bulk_timeout)?)?;
        Ok(Self {
            connection,
            pollers: Arc::new(ThreadLocal::new()),
            connector: poll_connector,
            bulk,
            config,
            bulk_timeout,
            rebuild_ids: RandomState::new(),
        })
    }

    fn prefix(&self, queue: u64) -> String {
        format!("{}:queue:{{{queue}}}", self.config.namespace)
    }

    fn keys(&self, queue: u64) -> QueueKeys {
        let prefix = self.prefix(queue);
        QueueKeys {
            built: format!("{prefix}:built"),
            waiting: format!("{prefix}:waiting"),
            active: format!("{prefix}:active"),
            seen: format!("{prefix}:seen"),
        }
    }

    /// An invocation of `script` on `queue`'s keys, in the order every per-queue script takes
    /// them: built, waiting, active, seen.
    fn on_queue<'a>(&self, script: &'a Script, queue: u64) -> redis::ScriptInvocation<'a> {
        let keys = self.keys(queue);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.built)
            .key(keys.waiting)
            .key(keys.active)
            .key(keys.seen);
        invocation
    }

    /// This thread's poll connection, prepared on first use on this thread's runtime.
    fn poller(&self) -> Result<Connection, ViewError> {
        self.pollers
            .get_or_try(|| self.connector.connection())
            .cloned()
            .map_err(unavailable)
    }

    /// Runs one round trip (a script may need a second to load itself) within the response
    /// timeout. The connection's own timeout bounds a read; this bounds the whole call,
    /// reconnecting included, so a Redis that accepts connections and never answers cannot
    /// hold a poll longer.
    async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ViewError> {
        let mut connection = self.connection.clone();
        self.within(invocation.invoke_async(&mut connection)).await
    }

    async fn within<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ViewError> {
        bounded(self.config.response_timeout, call).await
    }

    /// [`Self::script`] on the rebuild connection, within the rebuild bound.
    async fn bulk_script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ViewError> {
        let mut connection = self.bulk.clone();
        bounded(self.bulk_timeout, invocation.invoke_async(&mut connection)).await
    }

    /// [`Self::pipeline`] on the rebuild connection, within the rebuild bound.
    async fn bulk_pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, ViewError> {
        let mut connection = self.bulk.clone();
        bounded(self.bulk_timeout, pipe.query_async(&mut connection)).await
    }

    pub(crate) async fn poll(
        &self,
        queue: u64,
        member: u64,
        now_ms: i64,
    ) -> Result<Poll, ViewError> {
        let mut invocation = self.on_queue(&POLL, queue);
        invocation.arg(member).arg(now_ms);
        let mut connection = self.poller()?;
        let reply: Vec<i64> = self
            .within(invocation.invoke_async(&mut connection))
            .await?;
        match reply[..] {
            [0] => Ok(Poll::Unknown),
            [1] => Ok(Poll::Absent),
            [2, position] => Ok(Poll::Waiting {
                position: position.unsigned_abs(),
            }),
            [3, expires_ms] => Ok(Poll::Active { expires_ms }),
            _ => Err(ViewError::Unavailable(format!(
                "unexpected poll reply {reply:?}"
            ))),
        }
    }

    pub(crate) async fn add_waiting(
        &self,
        queue: u64,
        member: u64,
        seq: i64,
        now_ms: i64,
    ) -> Result<(), ViewError> {
        let mut invocation = self.on_queue(&ADD_WAITING, queue);
        invocation.arg(member).arg(seq).arg(now_ms);
        self.script::<i64>(&invocation).await.map(drop)
    }

    pub(crate) async fn activate(
        &self,
        queue: u64,
        admitted: &[(u64, i64)],
    ) -> Result<(), ViewError> {
        if admitted.is_empty() {
            return Ok(());
        }
        let mut invocation = self.on_queue(&ACTIVATE, queue);
        for (member, expires_ms) in admitted {
            invocation.arg(member).arg(expires_ms);
        }
        self.script::<i64>(&invocation).await.map(drop)
    }

    pub(crate) async fn remove(&self, queue: u64, members: &[u64]) -> Result<(), ViewError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut invocation = self.on_queue(&REMOVE, queue);
        for member in members {
            invocation.arg(member);
        }
        self.script::<i64>(&invocation).await.map(drop)
    }

    pub(crate) async fn idle(
        &self,
        queue: u64,
        seen_before_ms: i64,
    ) -> Result<Vec<u64>, ViewError> {
        let keys = self.keys(queue);
        // One key, one command: no script needed. A queue that is not built has no `seen`.
        let mut connection = self.connection.clone();
        let command = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.seen)
            .arg("-inf")
            .arg(format!("({seen_before_ms}"))
            .to_owned();
        self.within(command.query_async(&mut connection)).await
    }

    pub(crate) async fn rebuild(
        &self,
        queue: u64,
        waiting: &[(u64, i64)],
        active: &[(u64, i64)],
        now_ms: i64,
    ) -> Result<(), ViewError> {
        let started = Instant::now();
        let scratch = format!(
            "{}:rebuild:{:016x}",
            self.prefix(queue),
            self.rebuild_ids
                .hash_one((REBUILDS.fetch_add(1, Ordering::Relaxed), started))
        );
        let [new_waiting, new_active, new_seen, kept, fresh] =
            ["waiting", "active", "seen", "kept", "fresh"].map(|k| format!("{scratch}:{k}"));

        for chunk in waiting.chunks(REBUILD_CHUNK) {
            let mut pipe = redis::pipe();
            let zadd_waiting = pipe.cmd("ZADD").arg(&new_waiting);
            for (member, seq) in chunk {
                zadd_waiting.arg(seq).arg(member);
            }
            let zadd_seen = pipe.cmd("ZADD").arg(&new_seen);
            for (member, _) in chunk {
                zadd_seen.arg(now_ms).arg(member);
            }
            pipe.cmd("PEXPIRE")
                .arg(&new_waiting)
                .arg(REBUILD_KEYS_TTL_MS)
                .cmd("PEXPIRE")
                .arg(&new_seen)
                .arg(REBUILD_KEYS_TTL_MS);
            self.bulk_pipeline::<()>(&pipe).await?;
        }
        for chunk in active.chunks(REBUILD_CHUNK) {
            let mut pipe = redis::pipe();
            let zadd_active = pipe.cmd("ZADD").arg(&new_active);
            for (member, expires_ms) in chunk {
                zadd_active.arg(expires_ms).arg(member);
            }
            pipe.cmd("PEXPIRE")
                .arg(&new_active)
                .arg(REBUILD_KEYS_TTL_MS);
            self.bulk_pipeline::<()>(&pipe).await?;
        }

        // A member listed twice is one member in a sorted set: count as the set will.
        let distinct = |pairs: &[(u64, i64)]| {
            pairs
                .iter()
                .map(|(member, _)| *member)
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let mut swap_in = self.on_queue(&SWAP_IN, queue);
        swap_in
            .key(&new_waiting)
            .key(&new_active)
            .key(&new_seen)
            .key(&kept)
            .key(&fresh)
            .arg(distinct(waiting))
            .arg(distinct(active));
        self.bulk_script::<i64>(&swap_in).await?;
        tracing::debug!(
            queue,
            waiting = waiting.len(),
            active = active.len(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "queue view rebuilt"
        );
        Ok(())
    }

    pub(crate) async fn counts(&self, queue: u64, now_ms: i64) -> Result<(u64, u64), ViewError> {
        let mut invocation = self.on_queue(&COUNTS, queue);
        invocation.arg(now_ms);
        self.script(&invocation).await
    }
}
