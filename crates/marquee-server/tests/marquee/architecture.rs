//! The layering, checked over `cargo metadata` rather than hoped for in review.
//! ARCHITECTURE.md states these as Architecture Invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

struct Workspace {
    /// Direct normal (non-dev) dependencies of each workspace crate, by crate name.
    direct: BTreeMap<String, BTreeSet<String>>,
    /// Every crate in each workspace crate's normal dependency tree.
    transitive: BTreeMap<String, BTreeSet<String>>,
}

/// The host's target triple, so metadata is resolved for this platform only (and needs no
/// download of crates that only other platforms use).
fn host_triple() -> String {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

fn workspace() -> Workspace {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let name_of: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let normal_deps = |id: &str| -> Vec<String> {
        nodes[id]["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|dep| dep["pkg"].as_str().unwrap().to_owned())
            .collect()
    };

    let mut direct = BTreeMap::new();
    let mut transitive = BTreeMap::new();
    for &member in &members {
        let name = name_of[member].to_owned();
        direct.insert(
            name.clone(),
            normal_deps(member)
                .iter()
                .map(|id| name_of[id.as_str()].to_owned())
                .collect(),
        );
        let mut seen = BTreeSet::new();
        let mut stack = normal_deps(member);
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone()) {
                stack.extend(normal_deps(&id));
            }
        }
        transitive.insert(
            name,
            seen.iter()
                .map(|id| name_of[id.as_str()].to_owned())
                .collect(),
        );
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
];
const REDIS: &[&str] = &["redis", "deadpool-redis", "moka"];

fn users_of<'a>(ws: &'a Workspace, krate: &str) -> Vec<&'a str> {
    ws.direct
        .iter()
        .filter(|(_, deps)| deps.contains(krate))
        .map(|(name, _)| name.as_str())
        .collect()
}

#[test]
fn the_workspace_has_the_documented_crates() {
    let ws = workspace();
    let names: Vec<&str> = ws.direct.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "marquee-api",
            "marquee-cache",
            "marquee-domain",
            "marquee-persistence",
            "marquee-pool",
            "marquee-queue",
            "marquee-server",
            "marquee-testkit"
        ]
    );
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
    assert!(
        !tree.iter().any(|name| name.starts_with("marquee-")),
        "marquee-domain depends on no other marquee crate"
    );
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
        let users = users_of(&ws, krate);
        assert!(
            users.iter().all(|u| allowed.contains(u)),
            "{krate} used by {users:?}"
        );
    }
    assert!(
        !ws.transitive["marquee-pool"]
            .iter()
            .any(|name| name.starts_with("marquee-")),
        "marquee-pool depends on no marquee crate"
    );
}

/// marquee-cache and marquee-queue are the only crates that know Redis (and the queue knows
/// only the redis client), and they know nothing of Marquee: another service can use either
/// as it is.
#[test]
fn only_cache_and_queue_know_redis_and_both_are_standalone() {
    let ws = workspace();
    for krate in REDIS {
        let allowed: &[&str] = if *krate == "redis" {
            &["marquee-cache", "marquee-queue"]
        } else {
            &["marquee-cache"]
        };
        let users = users_of(&ws, krate);
        assert!(
            users.iter().all(|u| allowed.contains(u)),
            "{krate} used by {users:?}"
        );
    }
    for standalone in ["marquee-cache", "marquee-queue"] {
        assert!(
            !ws.transitive[standalone]
                .iter()
                .any(|name| name.starts_with("marquee-")),
            "{standalone} depends on no marquee crate"
        );
    }
}

/// marquee-api is the only crate that knows actix-web; it reaches storage only through the
/// domain's ports.
#[test]
fn only_api_knows_http() {
    let ws = workspace();
    for krate in WEB {
        let users = users_of(&ws, krate);
        assert!(
            users.iter().all(|u| *u == "marquee-api"),
            "{krate} used by {users:?}"
        );
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
    for krate in [
        "marquee-api",
        "marquee-cache",
        "marquee-domain",
        "marquee-persistence",
    ] {
        assert!(server.contains(krate), "marquee-server composes {krate}");
    }
    assert!(users_of(&ws, "marquee-server").is_empty());
}
