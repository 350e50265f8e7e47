//! Configuration layering and validation: every bad value names its key.

use std::collections::HashMap;
use std::time::Duration;

use marquee_server::Settings;
use marquee_server::settings::{LogFormat, Sources};
use secrecy::ExposeSecret;

fn load(environment: Option<&str>, variables: &[(&str, &str)]) -> anyhow::Result<Settings> {
    Settings::load_from(Sources {
        environment: environment.map(str::to_owned),
        // The repository's config/ folder: the files this test checks are the shipped ones.
        config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config").into()),
        variables: variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    })
}

fn error_of(environment: Option<&str>, variables: &[(&str, &str)]) -> String {
    format!("{:#}", load(environment, variables).unwrap_err())
}

#[test]
fn the_embedded_default_needs_no_services() {
    let settings = load(None, &[]).unwrap();
    assert_eq!(settings.server.bind, "127.0.0.1:8080");
    assert_eq!(settings.database.url, "data/marquee.sqlite3");
    assert!(settings.database.auto_migrate && settings.database.seed_demo_if_empty);
    assert!(
        settings.redis_config().is_none(),
        "in-process cache by default"
    );
    assert_eq!(settings.database.pool.maximum_pool_size, 10);
    assert_eq!(settings.database.pool.min_idle(), 10);
    assert_eq!(
        settings.database.pool.connection_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(settings.log.format, LogFormat::Pretty);
}

#[test]
fn the_embedded_copy_matches_the_file() {
    let without_dir = Settings::load_from(Sources {
        config_dir: Some("/nonexistent".into()),
        ..Sources::default()
    })
    .unwrap();
    let with_dir = load(None, &[]).unwrap();
    assert_eq!(format!("{without_dir:?}"), format!("{with_dir:?}"));
}

const SECRET: (&str, &str) = (
    "MARQUEE__AUTH__JWT_SECRET",
    "a-production-secret-of-at-least-32-bytes",
);

#[test]
fn production_uses_postgres_and_redis() {
    let settings = load(Some("production"), &[SECRET]).unwrap();
    assert!(settings.database.url.starts_with("postgres://"));
    assert!(!settings.database.auto_migrate);
    assert_eq!(
        settings.redis_config().unwrap().url,
        "redis://127.0.0.1:6379"
    );
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn environment_variables_override_files() {
    let overrides = [
        ("MARQUEE__SERVER__BIND", "0.0.0.0:9000"),
        (
            "MARQUEE__DATABASE__URL",
            "postgres://app:pw@db:5432/marquee",
        ),
        ("MARQUEE__REDIS__URL", ""),
        ("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "32"),
        ("MARQUEE__DATABASE__POOL__MINIMUM_IDLE", "4"),
        SECRET,
    ];
    let too_short_a_validation = [
        ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "250ms"),
        ("MARQUEE__DATABASE__POOL__VALIDATION_TIMEOUT", "249ms"),
    ];
    let settings = load(
        Some("production"),
        &[&overrides[..], &too_short_a_validation[..]].concat(),
    );
    // validation_timeout must be >= 250ms: the error names it.
    assert!(format!("{:#}", settings.unwrap_err()).contains("database.pool.validation_timeout"));

    let settings = load(Some("production"), &overrides).unwrap();
    assert_eq!(settings.server.bind, "0.0.0.0:9000");
    assert_eq!(settings.database.url, "postgres://app:pw@db:5432/marquee");
    assert!(
        settings.redis_config().is_none(),
        "an empty url means no redis"
    );
    assert_eq!(settings.database.pool.maximum_pool_size, 32);
    assert_eq!(settings.database.pool.min_idle(), 4);
}

#[test]
fn invalid_values_name_their_key() {
    // (variable, value, the key the error names)
    let cases: [(&str, &str, &str); 13] = [
        (
            "MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE",
            "abc",
            "maximum_pool_size",
        ),
        (
            "MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE",
            "0",
            "database.pool.maximum_pool_size",
        ),
        (
            "MARQUEE__DATABASE__POOL__MINIMUM_IDLE",
            "11",
            "database.pool.minimum_idle",
        ),
        (
            "MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT",
            "soon",
            "connection_timeout",
        ),
        ("MARQUEE__SERVER__BIND", "localhost", "server.bind"),
        ("MARQUEE__DATABASE__URL", " ", "database.url"),
        ("MARQUEE__REDIS__URL", "http://cache", "redis.url"),
        ("MARQUEE__REDIS__URL", "rediss://cache", "redis.url"),
        ("MARQUEE__DATABASE__URL", "postgress://db/m", "database.url"),
        (
            "MARQUEE__DATABASE__POOL__IDLE_TIMEOUT",
            "1s",
            "database.pool.idle_timeout",
        ),
        ("MARQUEE__LOG__FORMAT", "xml", "format"),
        ("MARQUEE__REDIS__MODE", "sharded", "mode"),
        ("MARQUEE__SERVER__BINDD", "0.0.0.0:1", "bindd"),
    ];
    for (variable, value, key) in cases {
        let message = error_of(None, &[(variable, value)]);
        assert!(
            message.contains(key),
            "{variable}={value:?}: {message:?} should name {key}"
        );
    }
}

/// Production refuses to start with the public development secret (it clears it), and no
/// environment accepts a short one.
#[test]
fn production_needs_its_own_token_secret() {
    let message = error_of(Some("production"), &[]);
    assert!(message.contains("auth.jwt_secret"), "{message}");
    let message = error_of(None, &[("MARQUEE__AUTH__JWT_SECRET", "short")]);
    assert!(message.contains("auth.jwt_secret"), "{message}");
    let settings = load(None, &[]).unwrap();
    assert!(
        !format!("{settings:?}").contains("marquee-development-secret"),
        "the secret never prints"
    );
    // Environment values are taken as text: an all-digit secret is not turned into a number.
    let digits = "1234567890123456789012345678901234567890";
    let settings = load(None, &[("MARQUEE__AUTH__JWT_SECRET", digits)]).unwrap();
    assert_eq!(settings.auth.jwt_secret.expose_secret(), digits);
    // A copy left in freed memory could outlive the process's need for it.
    fn zeroed_on_drop(_: &impl secrecy::zeroize::ZeroizeOnDrop) {}
    zeroed_on_drop(&settings.auth.jwt_secret);
    let message = error_of(None, &[("MARQUEE__BOOKING__HOLD_DURATION", "300000years")]);
    assert!(message.contains("booking.hold_duration"), "{message}");
}

#[test]
fn an_unknown_environment_is_an_error() {
    let message = error_of(Some("staging"), &[]);
    assert!(message.contains("staging.toml"), "{message}");
}

/// A read replica is PostgreSQL's alone: refused, with a reason, beside SQLite or MariaDB, or
/// when it is not a PostgreSQL URL; its `replica_max_lag` is at least the sampling period.
#[test]
fn a_read_replica_is_postgresql_only() {
    let replica = (
        "MARQUEE__DATABASE__REPLICA_URL",
        "postgres://replica:5432/marquee",
    );
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[replica], "database.url is SQLite"),
        (
            &[
                ("MARQUEE__DATABASE__URL", "mysql://root@db:3306/marquee"),
                replica,
            ],
            "database.url is MariaDB/MySQL",
        ),
        (
            &[
                ("MARQUEE__DATABASE__URL", "postgres://primary:5432/marquee"),
                ("MARQUEE__DATABASE__REPLICA_URL", "data/replica.sqlite3"),
            ],
            "must be a PostgreSQL streaming replica",
        ),
        (
            &[
                ("MARQUEE__DATABASE__URL", "postgres://primary:5432/marquee"),
                replica,
                ("MARQUEE__DATABASE__REPLICA_MAX_LAG", "100ms"),
            ],
            "database.replica_max_lag",
        ),
    ];
    for (variables, expected) in cases {
        let message = error_of(None, variables);
        assert!(
            message.contains(expected) && message.contains("database.replica"),
            "{variables:?}: {message}"
        );
    }
    let settings = load(
        None,
        &[
            ("MARQUEE__DATABASE__URL", "postgres://primary:5432/marquee"),
            replica,
        ],
    )
    .unwrap();
    let config = settings.replica_config().unwrap().expect("a replica");
    assert_eq!(config.max_lag, std::time::Duration::from_secs(1));
    assert_eq!(config.pool.pool_name, "replica");
    assert_eq!(
        settings.database.pool.pool_name, "marquee",
        "the primary's label stays"
    );
    let with_password = load(
        None,
        &[
            ("MARQUEE__DATABASE__URL", "postgres://primary:5432/marquee"),
            (
                "MARQUEE__DATABASE__REPLICA_URL",
                "postgres://app:s3cr3t@replica/marquee",
            ),
        ],
    )
    .unwrap();
    let shown = format!("{:?}", with_password.database);
    assert!(
        shown.contains("postgres://app:***@replica/marquee") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

/// `redis.mode = "cluster"` takes a comma-separated list of seed nodes, as the configuration
/// reference shows it; a list without it, a cluster without seeds, or a seed that is not
/// `redis://` is refused naming the keys, and no seed's password is shown.
#[test]
fn a_redis_cluster_is_a_mode_and_a_list_of_seeds() {
    let seeds = "redis://:s3cr3t@10.0.0.1:6379,redis://:s3cr3t@10.0.0.2:6379";
    let settings = load(
        None,
        &[
            ("MARQUEE__REDIS__MODE", "cluster"),
            ("MARQUEE__REDIS__URL", seeds),
        ],
    )
    .unwrap();
    let redis = settings.redis_config().unwrap();
    assert_eq!(redis.mode, marquee_cache::RedisMode::Cluster);
    assert_eq!(redis.url, seeds);
    let shown = format!("{:?}", settings.redis);
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert_eq!(shown.matches("***").count(), 2, "{shown}");

    let list_without_mode = error_of(None, &[("MARQUEE__REDIS__URL", seeds)]);
    for named in ["redis.url", "redis.mode", "cluster"] {
        assert!(list_without_mode.contains(named), "{list_without_mode}");
    }
    assert!(!list_without_mode.contains("s3cr3t"), "{list_without_mode}");
    let no_seeds = error_of(None, &[("MARQUEE__REDIS__MODE", "cluster")]);
    assert!(
        no_seeds.contains("redis.mode") && no_seeds.contains("redis.url"),
        "{no_seeds}"
    );
    let socket_seed = error_of(
        None,
        &[
            ("MARQUEE__REDIS__MODE", "cluster"),
            ("MARQUEE__REDIS__URL", "redis://a:1,unix:///run/redis.sock"),
        ],
    );
    assert!(
        socket_seed.contains("redis.url") && socket_seed.contains("redis://"),
        "{socket_seed}"
    );
}
