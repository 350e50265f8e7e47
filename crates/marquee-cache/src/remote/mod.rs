//! Redis, behind the `redis` feature: the link, the generation scripts, and the listener
//! that applies other instances' invalidations to this one's L1.

mod generation;
mod link;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use crate::local::LocalTier;

pub use link::{RedisConfig, RedisError, RedisLink};
pub use marquee_redis::RedisMode;

/// Applies invalidations published by any instance to this instance's L1, reconnecting
/// with backoff. The L1 is cleared whenever the subscription is (re)established, since
/// messages sent while it was down are lost. In a cluster the subscription is on one node
/// (classic `PUBLISH` reaches every node); when that node dies the stream ends, and the
/// next attempt subscribes on another node.
pub(crate) fn listen_for_invalidations(
    redis: &RedisLink,
    channel: String,
    local: LocalTier,
) -> impl Future<Output = ()> + Send + 'static {
    let redis = redis.clone();
    async move {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0usize;
        loop {
            if let Ok(mut subscription) = redis.subscribe(&channel, attempt).await {
                local.clear();
                backoff = Duration::from_millis(100);
                let mut messages = subscription.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(key) = message.get_payload::<String>() {
                        local.invalidate(&key);
                    }
                }
                local.clear();
            }
            // Whether the node refused or its stream ended, try the next one.
            attempt = attempt.wrapping_add(1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
