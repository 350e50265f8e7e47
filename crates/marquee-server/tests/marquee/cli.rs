//! The `marquee` binary as an operator runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn marquee(database: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_marquee"));
    command
        .args(args)
        .env_remove("MARQUEE_ENV")
        .env(
            "MARQUEE_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config"),
        )
        .env("MARQUEE__DATABASE__URL", database)
        .env("MARQUEE__LOG__FILTER", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run marquee")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn migrate_then_seed_bulk_and_demo() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/folder/m.sqlite3");

    let first = marquee(&db, &["migrate"], &[]);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).starts_with("applied 4 migration(s)"),
        "{first:?}"
    );
    let again = marquee(&db, &["migrate"], &[]);
    assert_eq!(stdout(&again), "the database is up to date");

    let bulk = marquee(
        &db,
        &[
            "seed",
            "--concerts",
            "3",
            "--schedules",
            "2",
            "--seats",
            "5",
        ],
        &[],
    );
    assert!(bulk.status.success(), "{bulk:?}");
    assert!(
        stdout(&bulk).starts_with("created 3 concerts, 6 schedules and 30 seats"),
        "{bulk:?}"
    );
    let demo = marquee(&db, &["seed"], &[]);
    assert!(stdout(&demo).contains("already has concerts"), "{demo:?}");

    let fresh = dir.path().join("fresh.sqlite3");
    let demo = marquee(&fresh, &["seed"], &[]);
    assert!(
        stdout(&demo).starts_with("created 120 concerts, 480 schedules and 24000 seats"),
        "{demo:?}"
    );
}

#[test]
fn bad_arguments_and_settings_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.sqlite3");
    let zero = marquee(&db, &["seed", "--concerts", "0"], &[]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--concerts"));

    let bad = marquee(
        &db,
        &["migrate"],
        &[("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "lots")],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("maximum_pool_size"),
        "{bad:?}"
    );
}

/// `marquee serve` migrates, seeds and serves, tags each request with an id (echoed to the
/// client, and in the JSON logs), logs slow requests with where the time went, and stops
/// cleanly on SIGTERM.
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.sqlite3");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_marquee"))
        .env_remove("MARQUEE_ENV")
        .env(
            "MARQUEE_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config"),
        )
        .env("MARQUEE__DATABASE__URL", &db)
        .env("MARQUEE__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("MARQUEE__SERVER__WORKERS", "1")
        .env("MARQUEE__LOG__FILTER", "info")
        .env("MARQUEE__LOG__FORMAT", "json")
        // Every request counts as slow, so the test sees the slow-request line.
        .env("MARQUEE__SERVER__SLOW_REQUEST_THRESHOLD", "0ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    while http_get(port, "/health/live").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = http_get(port, "/api/v1/concerts/1").expect("a 200");
    assert!(response.contains("\"id\":1"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-request-id: cli-request-1\r\n"),
        "the request id is echoed: {response}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("draining in-flight requests") && log.contains("stopped"),
        "{log}"
    );
    let slow: serde_json::Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["message"] == "slow request"
                && line["request_id"] == "cli-request-1"
                && line["path"] == "/api/v1/concerts/1"
        })
        .unwrap_or_else(|| panic!("no slow-request line for cli-request-1 in {log}"));
    assert_eq!(slow["path"], "/api/v1/concerts/1");
    for phase in [
        "cache_ms",
        "redis_ms",
        "pool_wait_ms",
        "query_ms",
        "elapsed_ms",
    ] {
        assert!(slow[phase].is_number(), "{phase} in {slow}");
    }
    assert!(
        slow["query_ms"].as_f64().unwrap() > 0.0,
        "the cold read queried: {slow}"
    );
}

/// A minimal HTTP/1.0 GET, so this test needs no async runtime; the whole response if 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nx-request-id: cli-request-1\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let ok = response
        .lines()
        .next()
        .is_some_and(|status| status.contains(" 200 "));
    ok.then_some(response)
}

/// `marquee capacity` shows the arithmetic from users to request rates, and needs no
/// database or configuration.
#[test]
fn capacity_shows_its_working() {
    let output = Command::new(env!("CARGO_BIN_EXE_marquee"))
        .args([
            "capacity",
            "--dau",
            "100000",
            "--visits",
            "20",
            "--peak-share",
            "0.7",
            "--peak-hours",
            "2",
        ])
        .env(
            "MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE",
            "not even read",
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    for figure in [
        "2,000,000 requests",
        "23.1 requests/s",
        "194.4 requests/s",
        "the peak spread over 4.0 hours, not 2",
    ] {
        assert!(text.contains(figure), "{figure:?} missing from:\n{text}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_marquee"))
        .args(["capacity", "--peak-share", "1.5"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--peak-share"));
}

/// `marquee capacity --opening-users` plans a ticket opening: instances, the shard of its
/// line, the database's cores; the daily flags and the opening's do not mix.
#[test]
fn capacity_plans_an_opening() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_marquee"))
            .arg("capacity")
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&[
        "--opening-users",
        "1000000",
        "--arrival",
        "10m",
        "--lookup-cpu-us",
        "50",
        "--queue-cpu-us",
        "100",
        "--redis-ops-per-shard",
        "100000",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    for figure in [
        "1,000,000 users / 600 s = 1,667 joins/s",
        "= 200,000 polls/s",
        "1,000,000 users x 4 / 600 s = 6,667 lookups/s",
        "polls every 14.3 s or more carry the line",
        "queue.max_poll_interval = \"15s\"",
    ] {
        assert!(text.contains(figure), "{figure:?} missing from:\n{text}");
    }
    for refused in [
        &["--opening-users", "10", "--dau", "5"][..],
        &["--arrival", "1m"],
        &["--opening-users", "10", "--utilisation", "1.5"],
    ] {
        let output = run(refused);
        assert!(!output.status.success(), "{refused:?} was taken");
        assert!(!output.stderr.is_empty());
    }
}

/// `marquee token` prints a token, and only the token, that the server accepts.
#[test]
fn token_prints_only_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.sqlite3");
    let output = marquee(&db, &["token", "--user", "42", "--ttl", "1h"], &[]);
    assert!(output.status.success(), "{output:?}");
    let token = stdout(&output);
    assert_eq!(token.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let tokens = marquee_api::auth::Tokens::new(
        &secrecy::SecretString::from("marquee-development-secret-do-not-use-in-production"),
        marquee_api::auth::TokenRules::default(),
    );
    assert_eq!(tokens.verify(&token).map(|user| user.get()), Ok(42));
    let refused = marquee(&db, &["token", "--user", "0"], &[]);
    assert!(!refused.status.success());
    let refused = marquee(&db, &["token", "--user", "1", "--ttl", "soon"], &[]);
    assert!(!refused.status.success());
    // Beyond auth.max_token_lifetime (24 h by default, here lowered): refused, and said why.
    let refused = marquee(&db, &["token", "--user", "1", "--ttl", "25h"], &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("auth.max_token_lifetime"),
        "{refused:?}"
    );
    let capped = marquee(
        &db,
        &["token", "--user", "1", "--ttl", "2h"],
        &[("MARQUEE__AUTH__MAX_TOKEN_LIFETIME", "1h")],
    );
    assert!(!capped.status.success(), "{capped:?}");
    assert!(stdout(&capped).is_empty(), "no token is printed");
}

/// The development secret guards only a loopback address: on any other address `serve`
/// refuses to start, names the key and says how to set it. With a secret of its own it
/// starts anywhere.
#[test]
fn serve_refuses_the_development_secret_on_a_reachable_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.sqlite3");
    for bind in ["0.0.0.0:0", "[::]:0", "10.1.2.3:0"] {
        let refused = marquee(&db, &["serve"], &[("MARQUEE__SERVER__BIND", bind)]);
        assert!(!refused.status.success(), "{bind}: {refused:?}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains("auth.jwt_secret") && message.contains("MARQUEE__AUTH__JWT_SECRET"),
            "{bind}: {message}"
        );
    }
    assert!(!db.exists(), "refused before anything was opened");
    // A loopback address with the development secret serves; a custom secret serves anywhere.
    for (bind, secret) in [
        ("127.0.0.1:0", None),
        (
            "0.0.0.0:0",
            Some("a-secret-of-our-own-that-is-long-enough-0123"),
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_marquee"));
        command
            .arg("serve")
            .env_remove("MARQUEE_ENV")
            .env("MARQUEE__DATABASE__URL", &db)
            .env("MARQUEE__SERVER__BIND", bind)
            .env("MARQUEE__LOG__FILTER", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(secret) = secret {
            command.env("MARQUEE__AUTH__JWT_SECRET", secret);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut log = Vec::new();
        while let Ok(line) = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let listening = line.contains("listening");
            log.push(line);
            if listening {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            log.iter().any(|line| line.contains("listening")),
            "{bind} should serve: {log:#?}"
        );
    }
}

/// A database URL whose password holds an `@`, with a second password as a query parameter
/// (as libpq accepts), and a Redis URL with a password in a refused scheme: no line of
/// `marquee migrate`'s output shows either password, whether the database cannot be reached
/// or the settings are refused.
#[test]
fn passwords_in_urls_never_reach_the_output() {
    const SECRETS: [&str; 4] = ["s3cr3t", "pa55", "qp4ss", "r3d1s"];
    let unreachable = [
        // Port 1 refuses at once; the pool gives up after its connection_timeout.
        "postgres://app:s3cr3t@pa55@127.0.0.1:1/marquee?password=qp4ss",
        // A malformed percent-escape, which libpq quotes back in its error.
        "postgres://app:s3cr3t%zz@127.0.0.1:1/marquee",
    ];
    let quick = [
        ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "1s"),
        ("MARQUEE__DATABASE__POOL__VALIDATION_TIMEOUT", "500ms"),
        ("MARQUEE__LOG__FILTER", "debug"),
    ];
    let assert_no_secret = |output: &Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{text}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret:?} in: {text}");
        }
        text
    };
    for url in unreachable {
        let output = marquee(Path::new(url), &["migrate"], &quick);
        let text = assert_no_secret(&output);
        assert!(
            text.contains("cannot open the database at postgres://app:***@127.0.0.1:1/marquee"),
            "{text}"
        );
    }
    let refused = marquee(
        Path::new("postgres://app:s3cr3t@127.0.0.1:1/marquee"),
        &["migrate"],
        &[("MARQUEE__REDIS__URL", "http://:r3d1s@cache")],
    );
    let text = assert_no_secret(&refused);
    assert!(text.contains("redis.url"), "{text}");
}
