//! [`RedisCluster`]: a real Redis Cluster of six local `redis-server` processes (three
//! masters, one replica each), for tests that need slots, redirections and failover.
//!
//! Each node runs with `--cluster-node-timeout 1000`, so a killed master's replica takes over
//! in two to three seconds, and keeps nothing on disk (`--save ""`, `--appendonly no`). Its
//! ports come from binding port 0, and its cluster bus port (the port + 10000) must be free
//! too. A node runs under a small shell watchdog that kills it, and removes its directory,
//! when the test process is gone: a cluster kept in a `static` (never dropped) does not
//! outlive the test binary.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable that enables the tests needing a Redis Cluster: `1` where
/// `redis-server` (with cluster support) and `redis-cli` are on `PATH`; the tests start their
/// own clusters.
pub const REDIS_CLUSTER_VAR: &str = "MARQUEE_TEST_REDIS_CLUSTER";

/// How long a node may go unseen before the others fail it over.
const NODE_TIMEOUT_MS: u64 = 1000;

/// Fails the calling test unless [`REDIS_CLUSTER_VAR`] is `1`.
///
/// # Panics
/// If the variable is unset: only a test marked
/// `#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]` may call this.
pub fn require_redis_cluster() {
    if !std::env::var(REDIS_CLUSTER_VAR).is_ok_and(|v| v == "1") {
        panic!(
            "this test needs a Redis Cluster: set {REDIS_CLUSTER_VAR}=1 (with redis-server and \
             redis-cli on PATH; the test starts its own six nodes)"
        );
    }
}

/// One node of a [`RedisCluster`].
#[derive(Debug, Clone)]
pub struct Node {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    pid: u32,
    dir: PathBuf,
}

/// Six local `redis-server --cluster-enabled yes` processes joined by
/// `redis-cli --cluster create … --cluster-replicas 1`. Dropping it kills every node and
/// removes their directories.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster, and waits until every node reports
    /// `cluster_state:ok` with all 16384 slots covered. Calls [`require_redis_cluster`] first.
    /// A port taken between its choice and the node's start (by another process's outgoing
    /// connection, say) fails that attempt; it is tried again on fresh ports, three times.
    pub fn start() -> Self {
        require_redis_cluster();
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start_on(&Self::free_ports()) {
                Ok(cluster) => return cluster,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("no redis cluster started in three attempts: {failures:?}");
    }

    /// Six ports for [`Self::start_on`], free now, each with its bus port (+10000) free too.
    pub fn free_ports() -> Vec<u16> {
        free_ports(6)
    }

    /// [`Self::start`] on the six `ports` given, once: for a test whose client must know the
    /// addresses before the cluster runs.
    pub fn start_on(ports: &[u16]) -> Self {
        require_redis_cluster();
        Self::try_start_on(ports).unwrap_or_else(|failure| panic!("{failure}"))
    }

    fn try_start_on(ports: &[u16]) -> Result<Self, String> {
        assert_eq!(ports.len(), 6, "a cluster of six nodes");
        let started = Instant::now();
        let ports = ports.to_vec();
        let nodes: Vec<Node> = ports.iter().map(|&port| start_node(port)).collect();
        // Dropped on failure: its nodes are killed.
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            let up = wait_for(Duration::from_secs(10), || {
                cli(node.port, &["PING"]).is_some_and(|reply| reply == "PONG")
            });
            if !up {
                return Err(format!("the node on port {} did not start", node.port));
            }
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run redis-cli --cluster create");
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        if !wait_for(Duration::from_secs(20), || cluster.is_ok()) {
            return Err(format!("the cluster on {ports:?} never reported ok"));
        }
        eprintln!(
            "redis cluster on ports {ports:?} ready in {:?}",
            started.elapsed()
        );
        Ok(cluster)
    }

    /// One cluster for the whole test binary, started on first use: for the tests that do
    /// not kill nodes. Its nodes stop when the test process ends.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        require_redis_cluster();
        SHARED.get_or_init(Self::start)
    }

    /// The seed list a client is configured with: every node, `redis://127.0.0.1:<port>`,
    /// comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes, as started.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The ports of the masters now serving slots.
    pub fn master_ports(&self) -> Vec<u16> {
        let nodes = cli(self.any_live_port(), &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serving =
                    fields.len() > 8 && fields[2].contains("master") && !fields[2].contains("fail");
                serving.then(|| port_of(fields[1]))
            })
            .collect()
    }

    /// The ports of the nodes on which a client is subscribed to `channel` (classic pub/sub:
    /// `PUBSUB NUMSUB` counts a node's own subscribers).
    pub fn subscribed_to(&self, channel: &str) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|node| node.port)
            .filter(|&port| {
                cli(port, &["PUBSUB", "NUMSUB", channel]).is_some_and(|reply| {
                    reply
                        .lines()
                        .nth(1)
                        .and_then(|count| count.trim().parse::<u32>().ok())
                        .is_some_and(|count| count > 0)
                })
            })
            .collect()
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        cli(self.any_live_port(), &["CLUSTER", "KEYSLOT", key])
            .and_then(|reply| reply.parse().ok())
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master now serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let live = self.any_live_port();
        let slot = self.slot_of(key);
        let nodes = cli(live, &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let covers = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((from, to)) => {
                    from.parse::<u16>().is_ok_and(|from| from <= slot)
                        && to.parse::<u16>().is_ok_and(|to| slot <= to)
                }
                None => range.parse::<u16>().is_ok_and(|only| only == slot),
            });
            if covers {
                return port_of(fields[1]);
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// Kills (SIGKILL) the master serving `key` and returns its port. Its replica takes over
    /// after the node timeout; [`Self::wait_until_ok`] waits for that.
    pub fn kill_master_of(&self, key: &str) -> u16 {
        let port = self.master_of(key);
        self.kill(port);
        port
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&self, port: u16) {
        let node = self
            .nodes
            .iter()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        let _ = Command::new("kill")
            .args(["-9", &node.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        wait_until(Duration::from_secs(5), || cli(port, &["PING"]).is_none());
    }

    /// Waits (at most 20 s) until every node still running reports `cluster_state:ok` with
    /// all 16384 slots served, and lists no node that is gone as a master serving slots:
    /// after a kill, until the dead master's replica has taken over.
    pub fn wait_until_ok(&self) {
        wait_until(Duration::from_secs(20), || self.is_ok());
    }

    /// Whether every node still running reports `cluster_state:ok` with all slots served,
    /// and lists only running nodes as masters serving slots.
    fn is_ok(&self) -> bool {
        let live: Vec<u16> = self
            .nodes
            .iter()
            .map(|node| node.port)
            .filter(|&port| cli(port, &["PING"]).is_some())
            .collect();
        let serving_masters_live = |nodes: &str| {
            nodes.lines().all(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serves = fields.len() > 8 && fields[2].contains("master");
                !serves || live.contains(&port_of(fields[1]))
            })
        };
        !live.is_empty()
            && live.iter().all(|&port| {
                cli(port, &["CLUSTER", "INFO"]).is_some_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                }) && cli(port, &["CLUSTER", "NODES"])
                    .is_some_and(|nodes| serving_masters_live(&nodes))
            })
    }

    fn any_live_port(&self) -> u16 {
        self.nodes
            .iter()
            .map(|node| node.port)
            .find(|&port| cli(port, &["PING"]).is_some())
            .expect("a live node")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = Command::new("kill")
                .args(["-9", &node.pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}

/// The port in a `CLUSTER NODES` address, `host:port@bus[,hostname]`.
fn port_of(address: &str) -> u16 {
    address
        .split(['@', ','])
        .next()
        .and_then(|host_port| host_port.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .expect("a node's port in CLUSTER NODES")
}

/// `redis-cli -p <port> <args>`'s reply, trimmed; `None` when the node does not answer.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let reply = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !reply.is_empty() && !reply.starts_with("Could not connect"))
        .then_some(reply)
}

/// Whether `done` came true within `limit`, asked every 50 ms.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn wait_until(limit: Duration, done: impl FnMut() -> bool) {
    assert!(
        wait_for(limit, done),
        "gave up after {limit:?} waiting for the redis cluster"
    );
}

/// `count` distinct ports that are free, each with its cluster bus port (+10000) free too.
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = listener.local_addr().expect("its address").port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus)) {
            ports.push(port);
            held.push(bus_listener);
        }
        held.push(listener);
    }
    ports
}

/// Starts `redis-server` on `port` under a watchdog, and returns once its pid is known.
fn start_node(port: u16) -> Node {
    let dir = tempfile::Builder::new()
        .prefix(&format!("marquee-cluster-{port}-"))
        .tempdir()
        .expect("a node directory")
        .keep();
    let pid_file = dir.join("redis.pid");
    // The watchdog: redis-server in the background, killed (and its directory removed) as
    // soon as the test process that started it is gone.
    let script = format!(
        "redis-server --port {port} --bind 127.0.0.1 --protected-mode no \
         --cluster-enabled yes --cluster-config-file nodes.conf \
         --cluster-node-timeout {NODE_TIMEOUT_MS} --cluster-replica-validity-factor 0 \
         --save '' --appendonly no --dir {dir} --logfile {dir}/redis.log & \
         server=$!; echo $server > {pid}; \
         while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.2; done; \
         kill -9 $server 2>/dev/null; rm -rf {dir}",
        dir = dir.display(),
        pid = pid_file.display(),
        parent = std::process::id(),
    );
    // The watchdog runs in the background of a shell that exits at once: it belongs to no
    // test thread, and nothing is left to reap.
    let started = Command::new("sh")
        .args(["-c", &format!("( {script} ) >/dev/null 2>&1 &")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start redis-server (is it on PATH?)");
    assert!(started.success(), "sh could not start redis-server");
    let mut pid = None;
    wait_until(Duration::from_secs(5), || {
        pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    Node {
        port,
        pid: pid.expect("the node's pid"),
        dir,
    }
}
