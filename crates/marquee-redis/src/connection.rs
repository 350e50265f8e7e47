//! [`Connection`]: one multiplexed connection type for a standalone Redis and a Redis Cluster.

use std::sync::{Arc, OnceLock};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::endpoints::RedisMode;

/// A multiplexed connection to a standalone Redis or a Redis Cluster. Cheap to clone: clones
/// share the connection. Implements [`ConnectionLike`], so `redis::cmd(..).query_async`,
/// pipelines and `redis::Script` run on it as on a single server's connection; in a cluster
/// each command goes to the master of its first key's slot (a command without a key to a
/// random node), and every key of one script or pipeline must share a slot (a hash tag).
#[derive(Clone)]
pub struct Connection {
    kind: ConnectionKind,
}

impl Connection {
    /// A connection through `manager`.
    pub(crate) fn standalone(manager: ConnectionManager) -> Self {
        Self {
            kind: ConnectionKind::Standalone(manager),
        }
    }

    /// A cluster connection that `client` opens on first use, with `config`.
    pub(crate) fn cluster(client: ClusterClient, config: ClusterConfig) -> Self {
        Self {
            kind: ConnectionKind::Cluster(Arc::new(LazyCluster {
                client,
                config,
                connection: OnceLock::new(),
            })),
        }
    }
}

#[derive(Clone)]
enum ConnectionKind {
    Standalone(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.kind {
            ConnectionKind::Standalone(_) => RedisMode::Standalone,
            ConnectionKind::Cluster(_) => RedisMode::Cluster,
        };
        f.debug_struct("Connection").field("mode", &mode).finish()
    }
}

/// A cluster connection made on first use: the cluster client spawns its driver on the
/// current runtime, which a connection prepared outside one (at start-up) does not have.
/// The client connects in the background and, should the seeds be down, tries again when
/// commands come.
struct LazyCluster {
    client: ClusterClient,
    config: ClusterConfig,
    connection: OnceLock<ClusterConnection>,
}

impl LazyCluster {
    fn get(&self) -> ClusterConnection {
        self.connection
            .get_or_init(|| {
                self.client
                    .get_pending_async_connection_with_config(self.config.clone())
            })
            .clone()
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            ConnectionKind::Standalone(connection) => connection.req_packed_command(cmd),
            ConnectionKind::Cluster(lazy) => {
                let mut connection = lazy.get();
                Box::pin(async move { connection.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            ConnectionKind::Standalone(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            ConnectionKind::Cluster(lazy) => {
                let mut connection = lazy.get();
                Box::pin(async move {
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            ConnectionKind::Standalone(connection) => connection.get_db(),
            ConnectionKind::Cluster(_) => 0,
        }
    }
}
