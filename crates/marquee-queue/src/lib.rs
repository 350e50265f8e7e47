#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod line;
mod local;
mod redis_view;

use std::sync::Arc;
use std::time::Duration;

use local::LocalView;
pub use marquee_redis::RedisMode;
use redis_view::RedisView;

/// A view of waiting lines: who waits in which order, who is admitted until when, and when
/// each waiting member last polled. Cheap to clone; clones share one view.
///
/// The view is not the source of truth: it answers the poll quickly and tells the caller
/// ([`Poll::Unknown`]) when it holds nothing for a queue, so that the caller reads the truth
/// elsewhere and [`rebuild`](Self::rebuild)s it.
#[derive(Clone)]
pub struct QueueView {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// One process's view, behind a lock.
    Local(Arc<LocalView>),
    /// One view shared by every process that uses the same Redis and namespace.
    Redis(Arc<RedisView>),
}

impl std::fmt::Debug for QueueView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Local(_) => f.write_str("QueueView::Local"),
            Inner::Redis(view) => f.debug_tuple("QueueView::Redis").field(view).finish(),
        }
    }
}

/// How to reach the Redis that holds a shared view.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisViewConfig {
    /// Standalone: `redis://[user:password@]host:port[/db]` or `unix:///path`. Cluster: a
    /// comma-separated list of seed nodes, each `redis://host:port`.
    pub url: String,
    /// [`RedisMode::Standalone`] (what [`RedisViewConfig::new`] sets) or
    /// [`RedisMode::Cluster`]. A queue's keys share one hash tag, so every script runs on
    /// one slot either way.
    pub mode: RedisMode,
    /// Prefix of every key, e.g. `myservice:v1`; keys read
    /// `<namespace>:queue:{<id>}:waiting`. Must not be empty or contain `{` or `}`: the braces
    /// around the queue id are the key's cluster hash tag, and Redis uses the first pair.
    pub namespace: String,
    /// The most one operation may wait for Redis before it fails with
    /// [`ViewError::Timeout`]. A poll is one round trip; a rebuild is one per chunk of
    /// members, each bounded by this.
    pub response_timeout: Duration,
    /// The most opening (or re-opening) the connection may take.
    pub connection_timeout: Duration,
}

impl RedisViewConfig {
    /// A configuration with the given URL and namespace, a 50 ms response timeout and a 1 s
    /// connection timeout.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: RedisMode::Standalone,
            namespace: namespace.into(),
            response_timeout: Duration::from_millis(50),
            connection_timeout: Duration::from_secs(1),
        }
    }

    fn validate(&self) -> Result<(), ViewError> {
        marquee_redis::node_urls(self.mode, &self.url)
            .map_err(|(field, reason)| ViewError::Config(format!("{field} {reason}")))?;
        if self.namespace.is_empty() || self.namespace.contains(['{', '}']) {
            return Err(ViewError::Config(format!(
                "namespace must be non-empty and contain no braces, got {:?}",
                self.namespace
            )));
        }
        if self.response_timeout.is_zero() {
            return Err(ViewError::Config(
                "response_timeout must be more than 0".into(),
            ));
        }
        if self.connection_timeout.is_zero() {
            return Err(ViewError::Config(
                "connection_timeout must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

/// Shows the URL with its passwords redacted.
impl std::fmt::Debug for RedisViewConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisViewConfig")
            .field("url", &marquee_redis::redact_urls(&self.url))
            .field("mode", &self.mode)
            .field("namespace", &self.namespace)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

/// Why the view could not answer. Every variant means the same to a caller that has a
/// source of truth: ask it instead.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Redis refused the connection or the command.
    #[error("queue view unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer within the response timeout.
    #[error("queue view did not answer in time")]
    Timeout,
    /// The configuration cannot work (bad URL, namespace or timeout).
    #[error("queue view configuration: {0}")]
    Config(String),
}

/// What the view knows of one member of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The view holds nothing for this queue: it was never built, or Redis lost it. Ask the
    /// source of truth and [`QueueView::rebuild`].
    Unknown,
    /// The queue is built and the member is neither waiting nor admitted.
    Absent,
    /// The member waits; `position` is 1-based: the members waiting ahead, plus one.
    Waiting {
        /// Members waiting ahead, plus one.
        position: u64,
    },
    /// The member is admitted until `expires_ms` (milliseconds since the Unix epoch).
    Active {
        /// When the admission ends, in milliseconds since the Unix epoch.
        expires_ms: i64,
    },
}

/// Calls `method` on whichever view `self` holds: the local one answers at once and cannot
/// fail, the Redis one is awaited.
macro_rules! on_view {
    ($view:ident.$method:ident($($arg:expr),*)) => {
        match &$view.inner {
            Inner::Local(view) => Ok(view.$method($($arg),*)),
            Inner::Redis(view) => view.$method($($arg),*).await,
        }
    };
}

impl QueueView {
    /// A view held in this process.
    pub fn local() -> Self {
        Self {
            inner: Inner::Local(Arc::new(LocalView::default())),
        }
    }

    /// A view held in Redis, shared by every process with the same URL and namespace. Opens
    /// no connection: the first operation does, and a Redis that is down makes operations
    /// fail (within the response timeout) until it is back. Must be called inside a Tokio
    /// runtime. Fails only on a configuration that cannot work.
    pub fn redis(config: RedisViewConfig) -> Result<Self, ViewError> {
        config.validate()?;
        Ok(Self {
            inner: Inner::Redis(Arc::new(RedisView::open(config)?)),
        })
    }

    /// What the view knows of `member`, in one round trip. A waiting member's poll also
    /// records `now_ms` as the time it was last seen (see [`idle`](Self::idle)). An
    /// admission that ended at or before `now_ms` reads as [`Poll::Absent`].
    pub async fn poll(&self, queue: u64, member: u64, now_ms: i64) -> Result<Poll, ViewError> {
        on_view!(self.poll(queue, member, now_ms))
    }

    /// Adds a waiting member at its join order `seq` (lower waits ahead), seen at `now_ms`;
    /// a member already waiting moves to `seq`. A member admitted past `now_ms` stays
    /// admitted. A no-op on a queue that is not built: the view of a queue is made only by
    /// [`rebuild`](Self::rebuild).
    pub async fn add_waiting(
        &self,
        queue: u64,
        member: u64,
        seq: i64,
        now_ms: i64,
    ) -> Result<(), ViewError> {
        on_view!(self.add_waiting(queue, member, seq, now_ms))
    }

    /// Admits each `(member, expires_ms)`: it leaves the line (if it was in it) and is
    /// active until `expires_ms`. All of them at once: no poll sees half the batch. A no-op
    /// on a queue that is not built.
    pub async fn activate(&self, queue: u64, admitted: &[(u64, i64)]) -> Result<(), ViewError> {
        on_view!(self.activate(queue, admitted))
    }

    /// Removes members from the line and from the admitted, at once.
    pub async fn remove(&self, queue: u64, members: &[u64]) -> Result<(), ViewError> {
        on_view!(self.remove(queue, members))
    }

    /// Waiting members last seen before `seen_before_ms`, longest unseen first: the
    /// candidates for dropping from the line. Empty for a queue that is not built.
    pub async fn idle(&self, queue: u64, seen_before_ms: i64) -> Result<Vec<u64>, ViewError> {
        on_view!(self.idle(queue, seen_before_ms))
    }

    /// Replaces the view of `queue` with `waiting` `(member, seq)` and `active`
    /// `(member, expires_ms)` and marks it built. A poll sees the old view or the new one,
    /// never a mix. A waiting member keeps the last-seen time it had; one new to the line is
    /// seen at `now_ms`.
    pub async fn rebuild(
        &self,
        queue: u64,
        waiting: &[(u64, i64)],
        active: &[(u64, i64)],
        now_ms: i64,
    ) -> Result<(), ViewError> {
        on_view!(self.rebuild(queue, waiting, active, now_ms))
    }

    /// `(waiting, active)`: members in the line, and admissions that end after `now_ms`.
    /// `(0, 0)` for a queue that is not built.
    pub async fn counts(&self, queue: u64, now_ms: i64) -> Result<(u64, u64), ViewError> {
        on_view!(self.counts(queue, now_ms))
    }
}
