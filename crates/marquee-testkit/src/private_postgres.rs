//! A private PostgreSQL primary with a streaming replica, for the tests of read replicas.
//!
//! The shared test server (`MARQUEE_TEST_DATABASE_URL`) cannot be given a replica, nor may a
//! test change its configuration; so a test that needs one makes its own pair: `initdb` of
//! a primary on a free port, `pg_basebackup -R` of it into a standby (which writes
//! `standby.signal` and `primary_conninfo`), both started with `pg_ctl`, and both stopped
//! with `pg_ctl stop -m immediate` and their folders removed when the value is dropped. With
//! `fsync` off the pair is up in about a second.
//!
//! The server programs come from the folder [`PG_BIN_VAR`] names (for example
//! `/usr/lib/postgresql/15/bin`). PostgreSQL refuses to run as root, so when the tests run
//! as root the programs run as the `postgres` user (`runuser`), and the folders are given
//! to it. A test that uses the pair is `#[ignore = "needs PostgreSQL's server programs: set
//! MARQUEE_TEST_PG_BIN"]` (see [the module on backend tests](crate::backends)).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Environment variable naming the folder of PostgreSQL's server programs (`initdb`,
/// `pg_ctl`, `pg_basebackup`, `psql`), e.g. `/usr/lib/postgresql/15/bin`.
pub const PG_BIN_VAR: &str = "MARQUEE_TEST_PG_BIN";

/// The folder [`PG_BIN_VAR`] names.
///
/// # Panics
/// If the variable is unset or empty: only a test marked `#[ignore = "needs ..."]` may call
/// this, and when it runs anyway it must fail rather than pass.
pub fn pg_bin() -> PathBuf {
    match std::env::var(PG_BIN_VAR) {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "this test needs PostgreSQL's server programs: set {PG_BIN_VAR}, e.g. \
             /usr/lib/postgresql/15/bin"
        ),
    }
}

/// One server of the pair: its data folder and port.
#[derive(Debug)]
struct Server {
    data: PathBuf,
    port: u16,
}

/// A private primary and its streaming replica, each on a free port of 127.0.0.1, with
/// trust authentication for the user `postgres`. Dropping it stops both and removes their
/// folders.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    root: PathBuf,
    primary: Server,
    replica: Server,
}

impl PrivatePostgres {
    /// Creates, starts and connects the pair. Panics if any step fails.
    pub fn primary_with_replica() -> Self {
        let bin = pg_bin();
        let root = std::env::temp_dir().join(format!(
            "marquee-pg-{}-{}",
            std::process::id(),
            crate::unique_namespace("pair").replace(':', "-")
        ));
        std::fs::create_dir_all(root.join("sock")).expect("create the pair's folder");
        let pair = Self {
            primary: Server {
                data: root.join("primary"),
                port: free_port(),
            },
            replica: Server {
                data: root.join("replica"),
                port: free_port(),
            },
            bin,
            root,
        };
        pair.give_to_postgres(&pair.root);
        pair.as_postgres(
            "initdb",
            &[
                "-D",
                path(&pair.primary.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let settings = format!(
            "\n# marquee-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{sock}'\nwal_level = replica\nmax_wal_senders = 4\n\
             hot_standby = on\nfsync = off\nfull_page_writes = off\nshared_buffers = 16MB\n\
             max_connections = 100\nlog_min_messages = warning\n",
            port = pair.primary.port,
            sock = pair.root.join("sock").display(),
        );
        append(&pair.primary.data.join("postgresql.conf"), &settings);
        pair.start(&pair.primary);
        let primary_port = pair.primary.port.to_string();
        pair.as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                path(&pair.replica.data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        // The copied configuration names the primary's port; a later line wins.
        append(
            &pair.replica.data.join("postgresql.conf"),
            &format!("port = {}\n", pair.replica.port),
        );
        pair.start_replica();
        pair
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` on the primary.
    pub fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary.port
        )
    }

    /// The same database on the replica.
    pub fn replica_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.replica.port
        )
    }

    /// Runs `sql` on the primary's database `database` with `psql`; returns what it printed
    /// (unaligned, tuples only). Panics if it fails.
    pub fn primary_sql(&self, database: &str, sql: &str) -> String {
        self.psql(self.primary.port, database, sql)
    }

    /// [`PrivatePostgres::primary_sql`] on the replica.
    pub fn replica_sql(&self, database: &str, sql: &str) -> String {
        self.psql(self.replica.port, database, sql)
    }

    /// Stops the replica at once (`pg_ctl stop -m immediate`), as a crash would.
    pub fn stop_replica(&self) {
        self.stop(&self.replica);
    }

    /// Starts the replica again and waits until it accepts read-only connections.
    pub fn start_replica(&self) {
        self.start(&self.replica);
    }

    /// Stops the replica from applying the WAL it receives (`pg_wal_replay_pause()`): from
    /// now on it shows the data as it was, however the primary changes, until
    /// [`PrivatePostgres::resume_replay`].
    pub fn pause_replay(&self) {
        self.replica_sql("postgres", "SELECT pg_wal_replay_pause()");
    }

    /// Lets the replica apply its WAL again (`pg_wal_replay_resume()`).
    pub fn resume_replay(&self) {
        self.replica_sql("postgres", "SELECT pg_wal_replay_resume()");
    }

    /// Waits (at most 30 s) until the replica has applied everything the primary had
    /// written when this was called.
    pub fn wait_for_replay(&self) {
        let target = self
            .primary_sql("postgres", "SELECT pg_current_wal_lsn()")
            .trim()
            .to_owned();
        let started = Instant::now();
        let query = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
        while self.replica_sql("postgres", &query).trim() != "t" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the replica did not replay up to {target} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn psql(&self, port: u16, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        succeeded(&format!("psql -c {sql:?}"), &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start(&self, server: &Server) {
        let log = self.root.join(format!("{}.log", server.port));
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                path(&server.data),
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    fn stop(&self, server: &Server) {
        self.as_postgres(
            "pg_ctl",
            &["-D", path(&server.data), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Runs one of the server programs, as `postgres` when this process is root.
    fn as_postgres(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|error| panic!("run {}: {error}", program.display()));
        succeeded(
            &format!("{} {}", program.display(), args.join(" ")),
            &output,
        );
        output
    }

    fn give_to_postgres(&self, folder: &Path) {
        if is_root() {
            let output = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(folder)
                .output()
                .expect("run chown");
            succeeded("chown", &output);
        }
        let output = Command::new("chmod")
            .arg("700")
            .arg(folder)
            .output()
            .expect("run chmod");
        succeeded("chmod", &output);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        for server in [&self.replica, &self.primary] {
            // A server already stopped (a test stopped the replica) makes this fail; the
            // folder is removed either way.
            let program = self.bin.join("pg_ctl");
            let data = server.data.display().to_string();
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if is_root() {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&program)
                    .args(args)
                    .output()
            } else {
                Command::new(&program).args(args).output()
            };
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .unwrap_or_else(|error| panic!("open {}: {error}", file.display()));
    file.write_all(text.as_bytes())
        .expect("append the settings");
}

/// A port nobody listens on now. Another process could take it before the server does;
/// on a test machine that is rare enough, and shows as a failed start that names the port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
