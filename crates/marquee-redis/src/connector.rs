//! [`Connector`]: makes [`Connection`]s to a standalone Redis or a Redis Cluster, finds a
//! node to subscribe on, and lists the masters.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::{ErrorKind, RedisError, RedisResult};

use crate::connection::Connection;
use crate::endpoints::{RedisMode, node_urls};

/// The time bounds a [`Connection`] is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The most opening (or re-opening) a connection to one node may take.
    pub connection: Duration,
    /// The most one command may wait for its reply.
    pub response: Duration,
}

impl Default for Timeouts {
    /// 1 s to connect, 50 ms per reply.
    fn default() -> Self {
        Self {
            connection: Duration::from_secs(1),
            response: Duration::from_millis(50),
        }
    }
}

/// Makes [`Connection`]s to one Redis deployment, standalone or cluster. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    kind: Kind,
    /// The node URLs as configured: one, or the cluster's seeds.
    urls: Arc<[String]>,
    timeouts: Timeouts,
}

#[derive(Clone)]
enum Kind {
    Standalone {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
        config: ClusterConfig,
    },
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("mode", &self.mode())
            .field("nodes", &self.urls.len())
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A configuration error, as the redis crate reports one.
fn invalid(reason: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, "invalid redis url", reason))
}

impl Connector {
    /// Prepares connections to `url` (in cluster mode a comma-separated list of seed nodes)
    /// without connecting.
    ///
    /// # Errors
    ///
    /// When [`node_urls`] refuses the URL, or the redis crate cannot use it.
    pub fn open(mode: RedisMode, url: &str, timeouts: Timeouts) -> RedisResult<Self> {
        let urls =
            node_urls(mode, url).map_err(|(field, reason)| invalid(format!("{field} {reason}")))?;
        let kind = match mode {
            RedisMode::Standalone => Kind::Standalone {
                client: redis::Client::open(urls[0].as_str())?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connection))
                    .set_response_timeout(Some(timeouts.response))
                    .set_number_of_retries(1),
            },
            RedisMode::Cluster => Kind::Cluster {
                client: ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(timeouts.connection)
                    .response_timeout(timeouts.response)
                    .retries(2)
                    .build()?,
                config: ClusterConfig::new()
                    .set_connection_timeout(timeouts.connection)
                    .set_response_timeout(timeouts.response),
            },
        };
        Ok(Self {
            kind,
            urls: urls.into(),
            timeouts,
        })
    }

    /// Standalone or cluster.
    pub fn mode(&self) -> RedisMode {
        match self.kind {
            Kind::Standalone { .. } => RedisMode::Standalone,
            Kind::Cluster { .. } => RedisMode::Cluster,
        }
    }

    /// A new connection, not yet open: it opens on first use, on the runtime of the task that
    /// uses it (its driver runs there), and reopens by itself after a failure.
    ///
    /// # Errors
    ///
    /// When the redis crate refuses the standalone configuration.
    pub fn connection(&self) -> RedisResult<Connection> {
        Ok(match &self.kind {
            Kind::Standalone { client, config } => Connection::standalone(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Kind::Cluster { client, config } => Connection::cluster(client.clone(), config.clone()),
        })
    }

    /// A connection subscribed to `channel`, on a node that answers. Standalone: the server.
    /// Cluster: a node of the cluster, starting with the `attempt`-th (modulo their number)
    /// of those the first reachable seed lists, or of the seeds when none does; classic
    /// pub/sub in a cluster delivers every `PUBLISH` to every node, so any node will do, and
    /// a listener whose node died subscribes again with the next `attempt` on another one.
    ///
    /// # Errors
    ///
    /// When no node accepts the subscription within the connection timeout.
    pub async fn subscribe(&self, channel: &str, attempt: usize) -> RedisResult<PubSub> {
        let candidates = match &self.kind {
            Kind::Standalone { client, .. } => vec![client.clone()],
            Kind::Cluster { .. } => {
                let mut nodes = self.cluster_nodes(false).await.unwrap_or_default();
                if nodes.is_empty() {
                    nodes = self.seed_clients()?;
                }
                let turn = attempt % nodes.len().max(1);
                nodes.rotate_left(turn);
                nodes
            }
        };
        let mut last = None;
        for client in candidates {
            let subscribe = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, RedisError>(pubsub)
            };
            match tokio::time::timeout(self.timeouts.connection, subscribe).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(timed_out("SUBSCRIBE")),
            }
        }
        Err(last.unwrap_or_else(|| timed_out("SUBSCRIBE")))
    }

    /// A client for each master: the server itself when standalone, every master the cluster
    /// lists when clustered. For commands that each node answers for its own keys only, such
    /// as `SCAN`.
    ///
    /// # Errors
    ///
    /// When no seed answers `CLUSTER NODES` within the bounds.
    pub async fn masters(&self) -> RedisResult<Vec<redis::Client>> {
        match &self.kind {
            Kind::Standalone { client, .. } => Ok(vec![client.clone()]),
            Kind::Cluster { .. } => self.cluster_nodes(true).await,
        }
    }

    /// A client per seed URL.
    fn seed_clients(&self) -> RedisResult<Vec<redis::Client>> {
        self.urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect()
    }

    /// The cluster's nodes that are not failed (only its masters with `masters_only`), as
    /// the first seed that answers lists them, each as a client carrying the seeds'
    /// credentials.
    async fn cluster_nodes(&self, masters_only: bool) -> RedisResult<Vec<redis::Client>> {
        let mut last = None;
        for seed in self.seed_clients()? {
            let listed = async {
                let mut connection = seed.get_multiplexed_async_connection().await?;
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async::<String>(&mut connection)
                    .await
            };
            let bound = self.timeouts.connection + self.timeouts.response;
            let text = match tokio::time::timeout(bound, listed).await {
                Ok(Ok(text)) => text,
                Ok(Err(error)) => {
                    last = Some(error);
                    continue;
                }
                Err(_) => {
                    last = Some(timed_out("CLUSTER NODES"));
                    continue;
                }
            };
            return parse_nodes(&text, masters_only)
                .into_iter()
                .map(|(host, port)| {
                    let mut info = seed.get_connection_info().clone();
                    info = info.set_addr(redis::ConnectionAddr::Tcp(host, port));
                    redis::Client::open(info)
                })
                .collect();
        }
        Err(last.unwrap_or_else(|| invalid("no seed node configured".into())))
    }
}

fn timed_out(what: &str) -> RedisError {
    RedisError::from((ErrorKind::Io, "timed out", what.to_owned()))
}

/// The `(host, port)` of each node in a `CLUSTER NODES` reply that is connected and not
/// failed (masters only with `masters_only`).
fn parse_nodes(text: &str, masters_only: bool) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, flags, link) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            if flags.contains("fail") || flags.contains("noaddr") || *link != "connected" {
                return None;
            }
            if masters_only && !flags.contains("master") {
                return None;
            }
            // `host:port@bus[,hostname]`
            let host_port = address.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lists_live_nodes_and_masters() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected
d4 127.0.0.1:7003@17003,node-d slave a1 0 0 1 connected
";
        assert_eq!(
            parse_nodes(text, true),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
        assert_eq!(parse_nodes(text, false).len(), 3);
    }

    #[test]
    fn opening_connects_to_nothing() {
        let cluster = Connector::open(
            RedisMode::Cluster,
            "redis://127.0.0.1:1,redis://127.0.0.1:2",
            Timeouts::default(),
        )
        .unwrap();
        assert_eq!(cluster.mode(), RedisMode::Cluster);
        assert!(cluster.connection().is_ok());
        let refused = Connector::open(
            RedisMode::Standalone,
            "redis://a:1,redis://b:2",
            Timeouts::default(),
        )
        .err()
        .unwrap();
        assert!(refused.to_string().contains("mode"), "{refused}");
    }
}
