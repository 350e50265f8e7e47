//! Views of either tier, each Redis one in a namespace of its own.

use std::time::Duration;

use marquee_queue::{QueueView, RedisMode, RedisViewConfig};
// Test modules name them `crate::support::...`.
pub use marquee_testkit::{RedisCluster, Tier, redis_url};

/// The start of the namespaces of views on the test binary's shared cluster, which
/// [`keys`] scans instead of the standalone Redis.
const CLUSTER_NAMESPACE: &str = "queue-cluster-test";

/// A time in milliseconds, far from 0 so that tests can go back and forth.
pub const T0: i64 = 1_700_000_000_000;

/// A namespace no other test (or earlier run) uses.
pub fn namespace() -> String {
    marquee_testkit::unique_namespace("queue-test")
}

pub fn redis_config(url: &str, namespace: &str) -> RedisViewConfig {
    RedisViewConfig {
        // Generous: on a loaded machine a slow reply would fail a test that is not about
        // time. The outage tests set their own bounds.
        response_timeout: Duration::from_secs(2),
        ..RedisViewConfig::new(url, namespace)
    }
}

/// A view of `tier`, empty, and its namespace (`None` in process).
pub fn view(tier: Tier) -> (QueueView, Option<String>) {
    match tier {
        Tier::Local => (QueueView::local(), None),
        Tier::Redis => {
            let namespace = namespace();
            let view = QueueView::redis(redis_config(&redis_url(), &namespace)).unwrap();
            (view, Some(namespace))
        }
        Tier::Cluster => {
            let namespace = marquee_testkit::unique_namespace(CLUSTER_NAMESPACE);
            let config = RedisViewConfig {
                mode: RedisMode::Cluster,
                ..redis_config(&RedisCluster::shared().url(), &namespace)
            };
            (QueueView::redis(config).unwrap(), Some(namespace))
        }
    }
}

/// Every key of `namespace`, sorted (by SCAN: the Redis is shared with other tests; on the
/// shared cluster, SCAN on every master).
pub async fn keys(namespace: &str) -> Vec<String> {
    let urls = if namespace.starts_with(CLUSTER_NAMESPACE) {
        RedisCluster::shared()
            .master_ports()
            .into_iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    } else {
        vec![redis_url()]
    };
    let mut keys: Vec<String> = Vec::new();
    for url in urls {
        let mut connection = connection(&url).await;
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{namespace}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .unwrap();
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    keys.sort();
    keys
}

/// Deletes every key of `namespace`, as a Redis restart would, without touching anyone
/// else's keys. Returns how many it deleted.
pub async fn delete_keys(namespace: &str) -> usize {
    let keys = keys(namespace).await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection(&redis_url()).await)
            .await
            .unwrap();
    }
    keys.len()
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}
