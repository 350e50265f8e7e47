//! Tests that need PostgreSQL, MariaDB or Redis.
//!
//! libtest cannot skip a test at run time: a test that returns early counts as passed. So a
//! test that needs a service is marked `#[ignore = "needs ..."]` and the runner's summary
//! counts it as ignored where nobody asked for it. `cargo test -- --include-ignored` runs it,
//! and then a service that is not configured is a failure that names the variable to set,
//! never a silent pass. [`on_each_backend!`](crate::on_each_backend) and
//! [`on_each_tier!`](crate::on_each_tier) put the attribute on their PostgreSQL and Redis arms;
//! a test written by hand carries it itself. [`assert_backend_tests_fail_without`] checks
//! both halves of that rule, and [`assert_backend_tests_run`] keeps CI from leaving the
//! ignored tests out.

use std::process::Command;

/// Environment variable naming a Redis server for tests, e.g. `redis://127.0.0.1:6379`.
pub const REDIS_URL_VAR: &str = "MARQUEE_TEST_REDIS_URL";
/// Set to `1` where every test that needs a backend must run (CI):
/// [`assert_backend_tests_run`] then fails a run that leaves them ignored.
pub const REQUIRE_BACKENDS_VAR: &str = "MARQUEE_REQUIRE_BACKENDS";

/// `prefix` followed by this process's id, a counter and the clock's nanoseconds: a Redis
/// namespace no other test, process or earlier run uses, so a test's keys are its own.
pub fn unique_namespace(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}:{}:{}:{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The Redis server [`REDIS_URL_VAR`] names.
///
/// # Panics
/// If the variable is unset or empty: only a test marked
/// `#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]` may call this, and when it runs
/// anyway (`--include-ignored`) it must fail rather than pass without Redis.
pub fn redis_url() -> String {
    match std::env::var(REDIS_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("this test needs Redis: set {REDIS_URL_VAR}, e.g. redis://127.0.0.1:6379"),
    }
}

/// Fails, when [`REQUIRE_BACKENDS_VAR`] is `1`, unless every one of `variables` is set and
/// this run includes the ignored tests (`--include-ignored` or `--ignored`).
///
/// Each integration-test binary whose tests need a backend calls this from one ordinary
/// (not ignored) test. Without it a CI run that dropped `--include-ignored` would pass with
/// every backend test ignored.
pub fn assert_backend_tests_run(variables: &[&str]) {
    if std::env::var(REQUIRE_BACKENDS_VAR).is_ok_and(|v| v == "1") {
        let missing: Vec<&str> = variables
            .iter()
            .copied()
            .filter(|var| !std::env::var(var).is_ok_and(|v| !v.is_empty()))
            .collect();
        assert!(
            missing.is_empty(),
            "{REQUIRE_BACKENDS_VAR}=1 but {} not set",
            missing.join(", ")
        );
        // libtest reads these flags from the test binary's own arguments.
        let runs_ignored =
            std::env::args().any(|arg| arg == "--include-ignored" || arg == "--ignored");
        assert!(
            runs_ignored,
            "{REQUIRE_BACKENDS_VAR}=1 but the tests that need a backend are ignored in this \
             run: pass `-- --include-ignored` to cargo test"
        );
    }
}

/// The two guards every integration-test binary with backend tests carries, as `#[test]`s:
/// `backend_tests_are_ignored_and_fail_without_their_servers`
/// ([`assert_backend_tests_fail_without`]) and `required_backends_are_set_and_their_tests_run`
/// ([`assert_backend_tests_run`]). `needs` lists the variables naming the servers, `modules`
/// the modules whose tests need them.
///
/// ```
/// marquee_testkit::backend_guards!(needs: [marquee_testkit::REDIS_URL_VAR], modules: ["redis"]);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! backend_guards {
    (needs: [$($variable:expr),+ $(,)?], modules: [$($module:expr),+ $(,)?]) => {
        /// The tests that need a server show as ignored where none is configured, and fail
        /// rather than pass when run without one.
        #[test]
        fn backend_tests_are_ignored_and_fail_without_their_servers() {
            $crate::assert_backend_tests_fail_without(&[$($variable),+], &[$($module),+]);
        }

        /// With `MARQUEE_REQUIRE_BACKENDS=1` (CI), a run without the servers or without the
        /// ignored tests fails.
        #[test]
        fn required_backends_are_set_and_their_tests_run() {
            $crate::assert_backend_tests_run(&[$($variable),+]);
        }
    };
}

/// Fails unless the running test binary's tests that need a backend are ignored, and each
/// fails, naming the variable to set, when run without `variables`.
///
/// Every ignored test is taken as a backend test, and so is every test with a module named
/// in `modules` on its path (`postgres` for [`on_each_backend!`](crate::on_each_backend),
/// `redis` for [`on_each_tier!`](crate::on_each_tier)), so an arm that lost its attribute is
/// caught. The binary then runs its ignored tests again with `variables` removed from its
/// environment: a pass there is a test that returns early instead of failing, which would
/// pass unnoticed under `--include-ignored`.
/// Call it from one ordinary test per integration-test binary.
pub fn assert_backend_tests_fail_without(variables: &[&str], modules: &[&str]) {
    let ignored = listed_tests(&["--ignored"]);
    assert!(
        !ignored.is_empty(),
        "no test is ignored, but the tests that need {} must be #[ignore = \"needs ...\"]",
        variables.join(" or ")
    );
    let not_ignored: Vec<String> = listed_tests(&[])
        .into_iter()
        .filter(|test| test.split("::").any(|module| modules.contains(&module)))
        .filter(|test| !ignored.contains(test))
        .collect();
    assert!(
        not_ignored.is_empty(),
        "these tests need a backend but are not #[ignore]d: {not_ignored:?}"
    );
    let mut run = this_test_binary();
    run.arg("--ignored");
    for var in variables {
        run.env_remove(var);
    }
    let output = run.output().expect("run the ignored tests");
    let printed = String::from_utf8_lossy(&output.stdout);
    for test in &ignored {
        assert!(
            printed.contains(&format!("test {test} ... FAILED")),
            "{test} does not fail without {}:\n{printed}",
            variables.join(" and ")
        );
        // libtest prints what a failed test wrote (its panic message) under this heading.
        let report = printed
            .split(&format!("---- {test} stdout ----"))
            .nth(1)
            .and_then(|rest| rest.split("\n---- ").next())
            .unwrap_or_default();
        assert!(
            variables
                .iter()
                .any(|var| report.contains(&format!("set {var}"))),
            "{test} fails without saying which variable to set:\n{report}"
        );
    }
}

fn this_test_binary() -> Command {
    Command::new(std::env::current_exe().expect("the test binary's path"))
}

/// The names of the tests the running test binary lists with `filters` (libtest's terse
/// list prints `name: test` per test).
fn listed_tests(filters: &[&str]) -> Vec<String> {
    let output = this_test_binary()
        .args(["--list", "--format", "terse"])
        .args(filters)
        .output()
        .expect("list the tests");
    assert!(output.status.success(), "the test binary lists its tests");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// Where a cache test keeps its entries: in the process only, or in Redis as well (one
/// server, or a Redis Cluster the test binary starts: [`RedisCluster`](crate::RedisCluster)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Local,
    Redis,
    Cluster,
}

/// Generates `mod sqlite`, `mod postgres` and `mod mysql`, each with a `#[tokio::test]` per
/// listed function, calling it with that [`Backend`](../marquee_persistence/enum.Backend.html).
///
/// The PostgreSQL tests are `#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]`,
/// and the MariaDB ones `#[ignore = "needs MariaDB: set MARQUEE_TEST_MYSQL_URL"]`; see
/// [the module](crate::backends) for why.
///
/// The expansion names `::marquee_persistence::Backend` and `#[tokio::test]`, so the calling
/// crate needs `marquee-persistence` and `tokio` (with `macros` and `rt-multi-thread`) among
/// its (dev-)dependencies. Each listed function is an `async fn(Backend)` in the module that
/// calls the macro.
///
/// ```ignore
/// // Needs marquee-persistence, which this crate does not depend on.
/// async fn lists_concerts(backend: marquee_persistence::Backend) { /* ... */ }
/// async fn finds_a_concert(backend: marquee_persistence::Backend) { /* ... */ }
///
/// marquee_testkit::on_each_backend!(lists_concerts, finds_a_concert);
/// // tests: sqlite::lists_concerts, postgres::lists_concerts and mysql::lists_concerts
/// // (both ignored unless asked for), ...
/// ```
#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(::marquee_persistence::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
                async fn $name() {
                    super::$name(::marquee_persistence::Backend::Postgres).await
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs MariaDB: set MARQUEE_TEST_MYSQL_URL"]
                async fn $name() {
                    super::$name(::marquee_persistence::Backend::Mysql).await
                }
            )*
        }
    };
}

/// Generates `mod local`, `mod redis` and `mod cluster`, each with a `#[tokio::test]` per
/// listed function, calling it with that [`Tier`]. Functions listed after `; redis only:` need
/// Redis (a lease, a second instance) and get only the `redis` and `cluster` tests.
///
/// The Redis tests are `#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]`, the cluster
/// ones `#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]`; see
/// [the module](crate::backends) for why. The expansion uses `#[tokio::test]`, so the calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`). Each listed function is an
/// `async fn(Tier)` in the module that calls the macro.
///
/// ```
/// use marquee_testkit::Tier;
///
/// async fn a_cold_key_is_loaded_once(tier: Tier) { /* ... */ }
/// async fn absence_is_remembered(tier: Tier) { /* ... */ }
/// async fn instances_share_one_load(tier: Tier) { /* ... */ }
///
/// // Tests: local::a_cold_key_is_loaded_once, redis::a_cold_key_is_loaded_once and
/// // cluster::a_cold_key_is_loaded_once (both ignored unless asked for), the same for
/// // absence_is_remembered, and redis:: and cluster::instances_share_one_load.
/// marquee_testkit::on_each_tier!(
///     a_cold_key_is_loaded_once,
///     absence_is_remembered;
///     redis only: instances_share_one_load
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! on_each_tier {
    ($($name:ident),* $(,)? $(; redis only: $($remote:ident),+ $(,)?)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Tier::Local).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
                async fn $name() {
                    super::$name($crate::Tier::Redis).await
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
                async fn $remote() {
                    super::$remote($crate::Tier::Redis).await
                }
            )+)?
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
                async fn $name() {
                    super::$name($crate::Tier::Cluster).await
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
                async fn $remote() {
                    super::$remote($crate::Tier::Cluster).await
                }
            )+)?
        }
    };
}
