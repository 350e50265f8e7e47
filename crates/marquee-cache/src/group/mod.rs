//! [`CacheGroup`]: one key group of a [`Cache`](crate::Cache), and its read path.
//!
//! A read goes: in-process tier, then Redis (if configured and its breaker is closed), then
//! the group's loader. Misses of one key share one load per process (single-flight) and,
//! with Redis, one load across processes (a lease taken with `SET NX PX`). Reads shortly
//! before expiry refresh the entry in the background (XFetch), and a refresher keeps the
//! hottest keys loaded. Redis failing or slow never fails a read: the breaker opens, and
//! reads go to the loader, at most `fallback_concurrency` at a time. A load that fails
//! while a stale entry is at hand serves the stale entry. Entries read from Redis are
//! checked against the group's policy, and stores are conditional on the key's generation,
//! so that neither a forged entry nor a load that raced a write can pin an old value.
//!
//! The pieces, one file each: `load` (load and store, the lease, the fallback bound),
//! `invalidate` (evict and update), `refresh` (XFetch and the hot-key refresher), `ticket`
//! (what a load remembers from before it read the source).

mod invalidate;
mod load;
mod refresh;
mod ticket;

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::Codec;
use crate::entry::{Entry, millis, now_ms};
use crate::error::{BuildError, CacheError};
use crate::flight::Flights;
use crate::local::Erased;
use crate::metrics::{GroupMetrics, Operation, Tier};
use crate::policy::CachePolicy;
use crate::remote::RedisLink;
use crate::shared::Shared;

use refresh::HotKeys;
use ticket::Ticket;

/// What a key of a group must be: `Display` writes it into the stored key, `Hash + Eq`
/// count its reads for the refresher, and the loader gets a clone. Implemented for every
/// type that is all of these.
pub trait CacheKey: Clone + Eq + Hash + Display + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + Display + Send + Sync + 'static> CacheKey for T {}

/// What a value of a group must be: the in-process tier hands out clones (wrap a large
/// value in an `Arc`). Implemented for every type that is all of these.
pub trait CacheValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

type LoadFuture<V, E> = Pin<Box<dyn Future<Output = Result<Option<V>, E>> + Send>>;

/// A group's loader, boxed.
pub(crate) type Loader<K, V, E> = Arc<dyn Fn(K) -> LoadFuture<V, E> + Send + Sync>;

/// One key group of a [`Cache`](crate::Cache): keys `K`, values `V`, and the loader's
/// error `E`. Cheap to clone; made by [`Cache::group`](crate::Cache::group).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use marquee_cache::{Cache, CacheConfig};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the catalogue is down")]
/// struct CatalogueDown;
///
/// let loads = Arc::new(AtomicUsize::new(0));
/// let cache = Cache::local(CacheConfig::default())?;
/// let names = cache.group::<u32, String>("product_name").build({
///     let loads = loads.clone();
///     move |id: u32| {
///         loads.fetch_add(1, Ordering::SeqCst);
///         async move {
///             match id {
///                 0 => Err(CatalogueDown),
///                 1..=99 => Ok(Some(format!("product {id}"))),
///                 _ => Ok(None), // no such product: remembered too
///             }
///         }
///     }
/// })?;
///
/// assert_eq!(names.get(&7).await?.as_deref(), Some("product 7"));
/// assert_eq!(names.get(&7).await?.as_deref(), Some("product 7"));
/// assert_eq!(names.get(&500).await?, None);
/// assert_eq!(names.get(&500).await?, None);
/// assert_eq!(loads.load(Ordering::SeqCst), 2);
/// assert!(names.get(&0).await.is_err());
///
/// names.update(&7, Some("renamed".to_owned())).await; // after a write
/// assert_eq!(names.get(&7).await?.as_deref(), Some("renamed"));
/// names.evict(&7).await;
/// assert_eq!(names.get(&7).await?.as_deref(), Some("product 7"));
/// # Ok(())
/// # }
/// ```
pub struct CacheGroup<K, V, E> {
    inner: Arc<GroupInner<K, V, E>>,
}

impl<K, V, E> Clone for CacheGroup<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, E> std::fmt::Debug for CacheGroup<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheGroup")
            .field("name", &self.inner.name)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

struct GroupInner<K, V, E> {
    shared: Arc<Shared>,
    name: &'static str,
    prefix: String,
    policy: CachePolicy,
    codec: Arc<dyn Codec<V>>,
    loader: Loader<K, V, E>,
    flights: Flights<Outcome<V, E>>,
    hot: HotKeys<K>,
    metrics: GroupMetrics,
}

type Outcome<V, E> = Result<Entry<V>, CacheError<E>>;

impl<K, V, E> CacheGroup<K, V, E>
where
    K: CacheKey,
    V: CacheValue,
    E: std::error::Error + Send + Sync + 'static,
{
    pub(crate) fn start(
        shared: Arc<Shared>,
        name: &'static str,
        policy: CachePolicy,
        codec: Arc<dyn Codec<V>>,
        loader: Loader<K, V, E>,
    ) -> Result<Self, BuildError> {
        let refresher = if shared.config.refresh.enabled {
            Some(
                tokio::runtime::Handle::try_current()
                    .map_err(|_| BuildError::NoRuntime("hot-key refresher"))?,
            )
        } else {
            None
        };
        shared.local.keep_marks_for(ticket::mark_life(&policy));
        let metrics = GroupMetrics::new(
            &shared.names,
            &shared.config.name,
            name,
            shared.redis.is_some(),
        );
        let inner = Arc::new(GroupInner {
            prefix: format!("{}:{name}:", shared.config.namespace),
            shared,
            name,
            policy,
            codec,
            loader,
            flights: Flights::new(),
            hot: HotKeys::default(),
            metrics,
        });
        if let Some(runtime) = refresher {
            runtime.spawn(refresh::refresh_hot_keys(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// The group's name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The group's policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.inner.policy
    }

    /// The key as stored: `{namespace}:{group}:{{key}}`, the key (written with its
    /// `Display`) inside braces. The braces are the key's Redis Cluster hash tag, so the
    /// entry, its `:generation` and its `:lease` share one slot and one script can touch all
    /// three; keys that display alike in different groups (`concert:{42}`,
    /// `schedules:{42}`) share a slot too. Braces and `%` in the key are written `%7B`,
    /// `%7D` and `%25`, and an empty key `%`, so the tag is never empty and two keys never
    /// share a stored key.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use marquee_cache::{Cache, CacheConfig};
    ///
    /// let mut config = CacheConfig::default();
    /// config.namespace = "shop:v1".to_owned();
    /// config.refresh.enabled = false; // no runtime here for the refresher
    /// let cache = Cache::local(config)?;
    /// let names = cache
    ///     .group::<String, String>("name")
    ///     .build(|_: String| async { Ok::<_, std::io::Error>(None) })?;
    /// assert_eq!(names.full_key(&"42".to_owned()), "shop:v1:name:{42}");
    /// assert_eq!(names.full_key(&"a{b}".to_owned()), "shop:v1:name:{a%7Bb%7D}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn full_key(&self, key: &K) -> String {
        let shown = key.to_string();
        format!("{}{{{}}}", self.inner.prefix, hash_tag(&shown))
    }

    /// The value of `key`: from a tier if fresh there, else loaded. `Ok(None)` means the
    /// loader said the key does not exist (remembered for `negative_ttl`).
    ///
    /// # Errors
    ///
    /// [`CacheError::Load`] when the load failed and no stale value was at hand;
    /// [`CacheError::LoadAborted`] when the loader panicked.
    pub async fn get(&self, key: &K) -> Result<Option<V>, CacheError<E>> {
        let inner = &self.inner;
        let full = self.full_key(key);
        let now = now_ms();
        if inner.shared.config.refresh.enabled {
            inner.hot.touch(key);
        }

        let mut stale = None;
        if let Some(entry) = self.local_get(&full) {
            if entry.is_fresh(now) {
                let tier = if inner.shared.redis.is_some() {
                    Tier::L1
                } else {
                    Tier::Local
                };
                inner.metrics.hit(tier);
                self.refresh_early_if_due(key, &full, &entry, now);
                return Ok(entry.value);
            }
            stale = Some(entry);
        }
        // The rest (a Redis read, a load, a stale fallback) is boxed: its future is a few
        // kilobytes, and an in-process hit, whose future would otherwise be as large, then
        // costs a small allocation instead of a large one that is zeroed and moved.
        Box::pin(self.get_past_l1(key, full, stale, now)).await
    }

    /// [`Self::get`] past a miss or a stale entry in the in-process tier.
    pub(crate) async fn get_past_l1(
        &self,
        key: &K,
        full: String,
        mut stale: Option<Entry<V>>,
        now: u64,
    ) -> Result<Option<V>, CacheError<E>> {
        let inner = &self.inner;
        if let Some(redis) = self.redis_if_closed() {
            let ticket = self.l1_ticket();
            let read = redis.get(&full).await;
            self.report(read.is_ok(), Operation::Get);
            if let Some(entry) = read
                .ok()
                .and_then(|raw| self.accept(&full, raw, ticket, now))
            {
                if entry.is_fresh(now) {
                    inner.metrics.hit(Tier::Redis);
                    self.refresh_early_if_due(key, &full, &entry, now);
                    return Ok(entry.value);
                }
                stale = newer(stale, entry);
            }
        }

        inner.metrics.miss();
        match self.load_shared(key, stale.clone()).await {
            Ok(entry) => Ok(entry.value),
            Err(error) => {
                let now = now_ms();
                let fallback = match stale.filter(|entry| self.within_grace(entry, now)) {
                    Some(entry) => Some(entry),
                    None => self
                        .retired(&full)
                        .await
                        .filter(|entry| self.within_grace(entry, now)),
                };
                match fallback {
                    Some(entry) => {
                        inner.metrics.stale_served();
                        Ok(entry.value)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The value an eviction of `full` retired, if one is kept: this instance's own, else the
    /// one in Redis. Only a load that failed reads it. A write evicts a key because its value
    /// changed, so a retired value is out of date by that write; but while the source cannot
    /// be read (a database restarting) it is the freshest there is, and within the stale
    /// grace it is served as any stale value is, rather than an error. docs/cache.md
    /// ("Stale on error").
    async fn retired(&self, full: &str) -> Option<Entry<V>> {
        let local = self.inner.shared.local.retired(full).and_then(typed);
        if local.is_some() {
            return local;
        }
        let redis = self.redis_if_closed()?;
        let read = redis.get(&ticket::retired_key(full)).await;
        self.report(read.is_ok(), Operation::Get);
        read.ok()?
            .and_then(|raw| self.decode_trusted(full, raw))
            .filter(|entry| entry.value.is_some())
    }

    /// Reads what Redis returned for `full`: `None` if there was nothing, or nothing this
    /// group can trust (see [`Self::decode_trusted`]). A fresh entry is also kept in L1,
    /// unless an invalidation came after `ticket`.
    fn accept(
        &self,
        full: &str,
        raw: Option<Vec<u8>>,
        ticket: Ticket,
        now: u64,
    ) -> Option<Entry<V>> {
        let entry = self.decode_trusted(full, raw?)?;
        if entry.is_fresh(now) {
            self.keep_in_l1(full, &entry, now, ticket);
        }
        Some(entry)
    }

    /// Decodes an entry read from Redis, unless it expires later than any entry of this
    /// group can: written now, an entry expires within its longest TTL. One further out
    /// was not written under this policy (it is forged or corrupt, or an older deployment
    /// wrote it with longer TTLs), and served, it would live as long as it claims; it is a
    /// miss instead, and the load replaces it. The stale grace is allowed on top, for
    /// clocks that differ between instances.
    fn decode_trusted(&self, full: &str, raw: Vec<u8>) -> Option<Entry<V>> {
        let Some(entry) = Entry::decode(Bytes::from(raw), self.inner.codec.as_ref()) else {
            tracing::debug!(
                group = self.inner.name,
                key = full,
                "an entry in Redis does not decode; read as a miss"
            );
            return None;
        };
        let policy = &self.inner.policy;
        let longest_ttl = if entry.value.is_some() {
            policy.window().1
        } else {
            policy.negative_ttl
        };
        let now = now_ms();
        let latest = now.saturating_add(millis(longest_ttl.saturating_add(policy.stale_grace)));
        if entry.expires_at > latest {
            tracing::warn!(
                group = self.inner.name,
                key = full,
                expires_in_ms = entry.expires_at.saturating_sub(now),
                "an entry in Redis expires later than this group's policy allows; read as a miss"
            );
            return None;
        }
        Some(entry)
    }

    /// This group's entry for `full` in the in-process tier.
    fn local_get(&self, full: &str) -> Option<Entry<V>> {
        self.inner.shared.local.get(full).and_then(typed)
    }

    /// Keeps `entry` in the in-process tier (for its whole life without Redis, for at most
    /// `l1_ttl` and never past its expiry in front of Redis), unless the key was
    /// invalidated since `ticket` was taken.
    fn keep_in_l1(&self, full: &str, entry: &Entry<V>, now: u64, ticket: Ticket) {
        if ticket.is_younger_than(self.inner.policy.longest_life()) {
            let hold = self.l1_hold(entry, now);
            self.inner
                .shared
                .local
                .insert(full, erase(entry), hold, ticket.local);
        }
    }

    fn l1_hold(&self, entry: &Entry<V>, now: u64) -> Duration {
        let shared = &self.inner.shared;
        if shared.redis.is_none() {
            return self.physical_ttl(entry, now);
        }
        let remaining = Duration::from_millis(entry.expires_at.saturating_sub(now));
        shared.config.l1_ttl.min(remaining)
    }

    /// How long the stores keep an entry: its TTL plus the stale grace (values), or the
    /// negative TTL (absence).
    fn physical_ttl(&self, entry: &Entry<V>, now: u64) -> Duration {
        let remaining = Duration::from_millis(entry.expires_at.saturating_sub(now));
        if entry.value.is_some() {
            remaining + self.inner.policy.stale_grace
        } else {
            remaining
        }
    }

    fn within_grace(&self, entry: &Entry<V>, now: u64) -> bool {
        entry.is_fresh(now)
            || (entry.value.is_some()
                && now
                    < entry
                        .expires_at
                        .saturating_add(millis(self.inner.policy.stale_grace)))
    }

    fn redis_if_closed(&self) -> Option<&RedisLink> {
        let shared = &self.inner.shared;
        shared.redis.as_ref().filter(|_| shared.breaker.allow())
    }

    /// Tells the breaker how a Redis call went, and counts a failure.
    fn report(&self, ok: bool, operation: Operation) {
        let breaker = &self.inner.shared.breaker;
        if ok {
            breaker.success();
        } else {
            breaker.failure();
            self.inner.metrics.error(operation);
        }
    }
}

/// The inside of a key's hash tag: `shown` with `%`, `{` and `}` escaped, or `%` for an
/// empty key. Redis hashes what lies between the first `{` and the next `}`, and the whole
/// key when that is empty, so an unescaped brace or an empty key would put an entry and its
/// lease in different slots.
fn hash_tag(shown: &str) -> std::borrow::Cow<'_, str> {
    if shown.is_empty() {
        return "%".into();
    }
    if !shown.contains(['%', '{', '}']) {
        return shown.into();
    }
    let mut escaped = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            other => escaped.push(other),
        }
    }
    escaped.into()
}

/// The entry as the in-process tier keeps it.
fn erase<V: CacheValue>(entry: &Entry<V>) -> Entry<Erased> {
    entry.clone().map(|value| Arc::new(value) as Erased)
}

/// An entry of the in-process tier as this group's type: `None` if another group's value
/// sits under the key (two groups given one name).
fn typed<V: CacheValue>(entry: Entry<Erased>) -> Option<Entry<V>> {
    let value = match entry.value {
        Some(value) => Some(value.downcast_ref::<V>()?.clone()),
        None => None,
    };
    Some(Entry {
        value,
        expires_at: entry.expires_at,
        delta: entry.delta,
    })
}

/// The entry that expires later.
fn newer<V>(current: Option<Entry<V>>, candidate: Entry<V>) -> Option<Entry<V>> {
    match current {
        Some(entry) if entry.expires_at >= candidate.expires_at => Some(entry),
        _ => Some(candidate),
    }
}

#[cfg(test)]
mod tests {
    use super::hash_tag;

    #[test]
    fn a_hash_tag_is_never_empty_and_never_shared() {
        assert_eq!(hash_tag("42"), "42");
        assert_eq!(hash_tag("1:20"), "1:20");
        assert_eq!(hash_tag(""), "%");
        assert_eq!(hash_tag("}"), "%7D");
        assert_eq!(hash_tag("{a}"), "%7Ba%7D");
        // `%` is escaped too, so a key that looks like an escape stays apart from the key
        // it looks like.
        assert_eq!(hash_tag("%7D"), "%257D");
        assert_ne!(hash_tag("%"), hash_tag(""));
    }
}
