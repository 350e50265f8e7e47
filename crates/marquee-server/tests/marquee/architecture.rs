//! The layering, checked over `cargo metadata` rather than hoped for in review.
//! ARCHITECTURE.md states these as Architecture Invariants.

use std::collections::{BTreeMap, BTreeSet};

use cargo_metadata::{DependencyKind, MetadataCommand, Node, PackageId};

struct Workspace {
    /// Direct normal (non-dev) dependencies of each workspace crate, by crate name.
    direct: BTreeMap<String, BTreeSet<String>>,
    /// Every crate in each workspace crate's normal dependency tree.
    transitive: BTreeMap<String, BTreeSet<String>>,
}

fn workspace() -> Workspace {
    // Resolved for the host's platform only, so that `--offline` needs no download of crates
    // that only other platforms use.
    let host = rustc_version::version_meta().expect("run rustc -vV").host;
    let metadata = MetadataCommand::new()
        .cargo_path(env!("CARGO"))
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .other_options(["--offline".to_owned(), "--filter-platform".to_owned(), host])
        .exec()
        .expect("run cargo metadata");
    let nodes: BTreeMap<&PackageId, &Node> = metadata
        .resolve
        .as_ref()
        .expect("cargo metadata resolves the dependencies")
        .nodes
        .iter()
        .map(|node| (&node.id, node))
        .collect();
    let normal_deps = |id: &PackageId| -> Vec<&PackageId> {
        nodes[id]
            .deps
            .iter()
            .filter(|dep| {
                dep.dep_kinds
                    .iter()
                    .any(|info| info.kind == DependencyKind::Normal)
            })
            .map(|dep| &dep.pkg)
            .collect()
    };
    let name_of = |id: &PackageId| metadata[id].name.to_string();

    let mut direct = BTreeMap::new();
    let mut transitive = BTreeMap::new();
    for member in &metadata.workspace_members {
        direct.insert(
            name_of(member),
            normal_deps(member).into_iter().map(name_of).collect(),
        );
        let mut seen = BTreeSet::new();
        let mut stack = normal_deps(member);
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend(normal_deps(id));
            }
        }
        transitive.insert(name_of(member), seen.into_iter().map(name_of).collect());
    }
    Workspace { direct, transitive }
}

const WEB: &[&str] = &["actix-web", "actix-http", "actix-server", "utoipa"];
const DATABASE: &[&str] = &[
    "diesel",
    "diesel_migrations",
    "r2d2",
    "pq-sys",
    "libsqlite3-sys",
    "mysqlclient-sys",
];
const REDIS: &[&str] = &["redis", "moka"];

/// The library crates, each in `crates/<name>`: all the workspace's crates but the binary and
/// the test kit.
pub const LIBRARY_CRATES: &[&str] = &[
    "marquee-api",
    "marquee-cache",
    "marquee-domain",
    "marquee-persistence",
    "marquee-pool",
    "marquee-queue",
    "marquee-redis",
];

fn users_of<'a>(ws: &'a Workspace, krate: &str) -> Vec<&'a str> {
    ws.direct
        .iter()
        .filter(|(_, deps)| deps.contains(krate))
        .map(|(name, _)| name.as_str())
        .collect()
}

fn assert_used_only_by(ws: &Workspace, krate: &str, allowed: &[&str]) {
    let users = users_of(ws, krate);
    assert!(
        users.iter().all(|user| allowed.contains(user)),
        "{krate} used by {users:?}"
    );
}

/// Another service can use `krate` as it is: nothing of Marquee comes with it.
fn assert_depends_on_no_marquee_crate(ws: &Workspace, krate: &str) {
    assert!(
        !ws.transitive[krate]
            .iter()
            .any(|name| name.starts_with("marquee-")),
        "{krate} depends on no other marquee crate"
    );
}

#[test]
fn the_workspace_has_the_documented_crates() {
    let ws = workspace();
    let names: Vec<&str> = ws.direct.keys().map(String::as_str).collect();
    let documented = [LIBRARY_CRATES, &["marquee-server", "marquee-testkit"]].concat();
    assert_eq!(names, documented);
}

/// The domain knows no web framework, database or cache, not even indirectly.
#[test]
fn domain_depends_on_no_infrastructure() {
    let ws = workspace();
    let tree = &ws.transitive["marquee-domain"];
    for forbidden in WEB.iter().chain(DATABASE).chain(REDIS) {
        assert!(
            !tree.contains(*forbidden),
            "marquee-domain pulls in {forbidden}"
        );
    }
    assert_depends_on_no_marquee_crate(&ws, "marquee-domain");
}

/// marquee-persistence and marquee-pool are the only crates that know diesel and r2d2; only
/// persistence knows the backends (drivers, migrations). marquee-pool knows nothing of
/// Marquee: another service can use it as it is.
#[test]
fn only_persistence_and_pool_know_the_database() {
    let ws = workspace();
    for krate in DATABASE {
        let allowed: &[&str] = if matches!(*krate, "diesel" | "r2d2") {
            &["marquee-persistence", "marquee-pool"]
        } else {
            &["marquee-persistence"]
        };
        assert_used_only_by(&ws, krate, allowed);
    }
    assert_depends_on_no_marquee_crate(&ws, "marquee-pool");
}

/// marquee-cache, marquee-queue and marquee-redis (the connection both share, standalone or
/// cluster) are the only crates that know Redis (and the queue knows only the redis client),
/// and they know nothing of Marquee: another service can use any of them as it is. The only
/// marquee crate the cache and the queue depend on is marquee-redis, which depends on none.
#[test]
fn only_cache_queue_and_redis_know_redis_and_all_are_standalone() {
    let ws = workspace();
    for krate in REDIS {
        let allowed: &[&str] = if *krate == "redis" {
            &["marquee-cache", "marquee-queue", "marquee-redis"]
        } else {
            &["marquee-cache"]
        };
        assert_used_only_by(&ws, krate, allowed);
    }
    assert_depends_on_no_marquee_crate(&ws, "marquee-redis");
    assert_used_only_by(&ws, "marquee-redis", &["marquee-cache", "marquee-queue"]);
    for standalone in ["marquee-cache", "marquee-queue"] {
        let marquee: Vec<&String> = ws.transitive[standalone]
            .iter()
            .filter(|name| name.starts_with("marquee-"))
            .collect();
        assert_eq!(
            marquee,
            ["marquee-redis"],
            "{standalone} depends on no other marquee crate"
        );
    }
}

/// marquee-api is the only crate that knows actix-web; it reaches storage only through the
/// domain's ports.
#[test]
fn only_api_knows_http() {
    let ws = workspace();
    for krate in WEB {
        assert_used_only_by(&ws, krate, &["marquee-api"]);
    }
    let api = &ws.direct["marquee-api"];
    for forbidden in DATABASE.iter().chain(REDIS).chain(&["marquee-persistence"]) {
        assert!(
            !api.contains(*forbidden),
            "marquee-api depends on {forbidden}"
        );
    }
}

/// marquee-testkit serves tests only: no crate depends on it outside dev-dependencies.
#[test]
fn testkit_is_for_tests_only() {
    let ws = workspace();
    assert!(users_of(&ws, "marquee-testkit").is_empty());
}

/// The binary crate is the composition root: it is the only crate that depends on all the
/// others, and nothing depends on it.
#[test]
fn the_binary_is_the_composition_root() {
    let ws = workspace();
    let server = &ws.direct["marquee-server"];
    // marquee-pool comes to it through marquee-persistence, and marquee-redis through the
    // cache and the queue, which re-export what it needs (`RedisMode`).
    for krate in LIBRARY_CRATES
        .iter()
        .filter(|krate| !["marquee-pool", "marquee-redis"].contains(*krate))
    {
        assert!(server.contains(*krate), "marquee-server composes {krate}");
    }
    assert!(users_of(&ws, "marquee-server").is_empty());
}
