//! Without the `redis` feature: a `RedisLink` that cannot exist, so that the read path is
//! written once, for both builds. A cache built without the feature has no link
//! (`Option<RedisLink>` is always `None`), and each method below is unreachable.

/// No Redis in this build.
#[derive(Debug, Clone)]
pub(crate) enum RedisLink {}

/// The error type of the methods below. Inhabited, unlike the link, so that the read
/// path's `Err` arms stay reachable patterns in both builds.
#[derive(Debug)]
pub(crate) struct RedisError;

use crate::bump::AfterBump;

type Reply<T> = Result<T, RedisError>;

impl RedisLink {
    pub async fn get(&self, _key: &str) -> Reply<Option<Vec<u8>>> {
        match *self {}
    }

    pub async fn delete_if_equals(&self, _key: &str, _value: &str) -> Reply<bool> {
        match *self {}
    }

    pub async fn publish(&self, _channel: &str, _message: &str) -> Reply<()> {
        match *self {}
    }

    pub async fn generation(&self, _generation_key: &str) -> Reply<u64> {
        match *self {}
    }

    pub async fn lease_and_read(
        &self,
        _lease: &str,
        _token: &str,
        _ttl_ms: u64,
        _key: &str,
        _generation_key: &str,
    ) -> Reply<Option<(Option<Vec<u8>>, u64)>> {
        match *self {}
    }

    pub async fn set_px_if_generation(
        &self,
        _generation_key: &str,
        _generation: u64,
        _key: &str,
        _value: &[u8],
        _ttl_ms: u64,
        _release: Option<crate::bump::HeldLease<'_>>,
    ) -> Reply<bool> {
        match *self {}
    }

    pub async fn bump_generation(
        &self,
        _generation_key: &str,
        _mark_ms: u64,
        _key: &str,
        _then: AfterBump<'_>,
        _announce_on: &str,
    ) -> Reply<()> {
        match *self {}
    }
}

/// Never called: there is no link to listen on.
pub(crate) fn listen_for_invalidations(
    redis: &RedisLink,
    _channel: String,
    _local: crate::local::LocalTier,
) -> std::future::Ready<()> {
    match *redis {}
}
