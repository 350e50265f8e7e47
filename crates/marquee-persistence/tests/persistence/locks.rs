//! Waits on the database are bounded: a lock held by other work is waited for at most
//! `lock_timeout`, a statement runs at most `statement_timeout`, and either failure reaches
//! the domain as `RepositoryError::Busy`, whichever path (a write, a catalogue read) met it.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use marquee_domain::{BusyCause, CatalogueRepository, RepositoryError, ScheduleId, SeatFilter};
use marquee_persistence::test_support::{TestDatabase, TestSession};
use marquee_persistence::{
    Backend, DbPool, DieselCatalogue, PersistenceError, PoolConfig, SeedPlan, SessionTimeouts,
};

use crate::{on_each_backend, quick_config};

const SHORT_LOCK_WAIT: SessionTimeouts = SessionTimeouts {
    lock_timeout: Duration::from_millis(500),
    statement_timeout: Duration::from_secs(5),
};

/// One concert, one schedule, five seats.
const SMALL_CATALOGUE: SeedPlan = SeedPlan {
    concerts: 1,
    schedules_per_concert: 1,
    seats_per_schedule: 5,
};

/// A pool with `timeouts` on a fresh migrated database, seeded through that pool with
/// `plan`.
async fn seeded_pool(
    backend: Backend,
    config: PoolConfig,
    timeouts: SessionTimeouts,
    plan: SeedPlan,
) -> (TestDatabase, DbPool) {
    let db = TestDatabase::new(backend);
    let pool = DbPool::build_with(db.url(), &config, timeouts).expect("the pool builds");
    pool.seed(plan).await.expect("the catalogue is seeded");
    (db, pool)
}

/// Holds `sql`'s locks on a thread of its own, as another process would, until the returned
/// sender is dropped (or 15 s pass, so that a failing test cannot leave it behind).
fn hold_locks(mut session: TestSession, sql: &'static str) -> mpsc::Sender<()> {
    let (locked, on_locked) = mpsc::channel();
    let (release, on_release) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        session.execute(sql);
        locked.send(()).expect("the test waits for the lock");
        let _ = on_release.recv_timeout(Duration::from_secs(15));
        session.execute("ROLLBACK;");
    });
    on_locked
        .recv_timeout(Duration::from_secs(10))
        .expect("the other session holds the lock");
    release
}

/// One write, through the pool, of the table the other session locked.
async fn touch_seat(pool: &DbPool) -> Result<usize, PersistenceError> {
    pool.run(|conn| {
        diesel::sql_query("UPDATE seats SET price = price WHERE id = 1")
            .execute(conn)
            .map_err(PersistenceError::from)
    })
    .await
}

fn assert_busy_with(error: impl Into<RepositoryError>, expected: BusyCause) {
    let error = error.into();
    assert_eq!(error, RepositoryError::Busy { cause: expected }, "{error}");
}

/// PostgreSQL: a table lock (`LOCK TABLE seats`, as a migration takes). SQLite: the write
/// lock (`BEGIN IMMEDIATE`, as a second process or `marquee seed` takes). MariaDB: every
/// seat row locked (`SELECT ... FOR UPDATE`, as a long transaction holds them). A write waits
/// `lock_timeout` (not the old 5 s of `busy_timeout`, not forever; MariaDB rounds it up to a
/// whole second), then is `Busy`; once the lock is gone the same write succeeds.
async fn a_write_behind_a_held_lock_is_busy_after_lock_timeout(backend: Backend) {
    let (db, pool) = seeded_pool(backend, quick_config(), SHORT_LOCK_WAIT, SMALL_CATALOGUE).await;
    let release = hold_locks(
        db.session(),
        match backend {
            Backend::Postgres => "BEGIN; LOCK TABLE seats IN ACCESS EXCLUSIVE MODE;",
            Backend::Sqlite => "BEGIN IMMEDIATE;",
            Backend::Mysql => "BEGIN; SELECT id FROM seats FOR UPDATE;",
        },
    );

    let started = Instant::now();
    let error = touch_seat(&pool).await.unwrap_err();
    let waited = started.elapsed();
    assert_busy_with(error, BusyCause::LockWait);
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "gave up after {waited:?}"
    );

    // Readers run beside SQLite's one writer (WAL) and MariaDB's row locks (a plain read
    // takes none); on PostgreSQL the table lock stops them too, and a catalogue read is
    // bounded like any other statement.
    let catalogue = DieselCatalogue::new(pool.clone());
    let schedule = ScheduleId::new(1).unwrap();
    let read = catalogue.list_seats(schedule, SeatFilter::default()).await;
    match backend {
        Backend::Sqlite | Backend::Mysql => {
            assert_eq!(read.unwrap().map(|seats| seats.len()), Some(5));
        }
        Backend::Postgres => assert_busy_with(read.unwrap_err(), BusyCause::LockWait),
    }

    drop(release);
    let deadline = Instant::now() + Duration::from_secs(10);
    while touch_seat(&pool).await.is_err() {
        assert!(Instant::now() < deadline, "the write never got through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every pooled connection starts with the configured bounds.
async fn connections_start_with_the_configured_bounds(backend: Backend) {
    let (_db, pool) = seeded_pool(backend, quick_config(), SHORT_LOCK_WAIT, SMALL_CATALOGUE).await;
    let bounds = pool
        .run(move |conn| {
            let mut show = |sql| {
                diesel::sql_query(sql)
                    .get_result::<Setting>(conn)
                    .map(|row| row.value)
            };
            Ok(match backend {
                Backend::Postgres => (
                    show("SELECT current_setting('lock_timeout') AS value")?,
                    show("SELECT current_setting('statement_timeout') AS value")?,
                ),
                Backend::Sqlite => (
                    show("SELECT CAST(timeout AS TEXT) AS value FROM pragma_busy_timeout")?,
                    String::new(),
                ),
                Backend::Mysql => (
                    show("SELECT CAST(@@innodb_lock_wait_timeout AS CHAR) AS value")?,
                    show("SELECT CAST(@@max_statement_time AS CHAR) AS value")?,
                ),
            })
        })
        .await
        .unwrap();
    match backend {
        Backend::Postgres => assert_eq!(bounds, ("500ms".to_owned(), "5s".to_owned())),
        Backend::Sqlite => assert_eq!(bounds.0, "500"),
        // InnoDB counts whole seconds: 500 ms waits a second.
        Backend::Mysql => assert_eq!(bounds, ("1".to_owned(), "5.000000".to_owned())),
    }
}

on_each_backend!(
    a_write_behind_a_held_lock_is_busy_after_lock_timeout,
    connections_start_with_the_configured_bounds,
);

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// A statement that runs past `statement_timeout` is cancelled by the database and is
/// `Busy`: PostgreSQL's `statement_timeout`, MariaDB's `max_statement_time` (SQLite has no
/// statement bound).
async fn a_statement_past_statement_timeout_is_cancelled_as_busy(backend: Backend) {
    let timeouts = SessionTimeouts {
        statement_timeout: Duration::from_millis(300),
        ..SHORT_LOCK_WAIT
    };
    let (_db, pool) = seeded_pool(backend, quick_config(), timeouts, SMALL_CATALOGUE).await;
    let started = Instant::now();
    let error = pool
        .run(move |conn| {
            diesel::sql_query(match backend {
                Backend::Mysql => "SELECT SLEEP(3)",
                _ => "SELECT pg_sleep(3)",
            })
            .execute(conn)
            .map_err(PersistenceError::from)
        })
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_busy_with(error, BusyCause::StatementCancelled);
    assert!(took < Duration::from_secs(2), "cancelled after {took:?}");
}

/// Seeding (like migrating) is an operator's bulk work: its statements may run past
/// `statement_timeout`, and the connection has its bound again afterwards.
async fn seeding_runs_past_statement_timeout_and_restores_it(backend: Backend) {
    let timeouts = SessionTimeouts {
        statement_timeout: Duration::from_millis(50),
        ..SHORT_LOCK_WAIT
    };
    // One connection, so the check below runs on the connection that seeded.
    let config = PoolConfig {
        maximum_pool_size: 1,
        ..quick_config()
    };
    // 100,000 seats in one INSERT ... SELECT: far longer than 50 ms, and not cut off.
    let many_seats = SeedPlan {
        concerts: 100,
        schedules_per_concert: 4,
        seats_per_schedule: 250,
    };
    let (_db, pool) = seeded_pool(backend, config, timeouts, many_seats).await;
    let bound = pool
        .run(move |conn| {
            diesel::sql_query(match backend {
                Backend::Mysql => "SELECT CAST(@@max_statement_time AS CHAR) AS value",
                _ => "SELECT current_setting('statement_timeout') AS value",
            })
            .get_result::<Setting>(conn)
            .map(|row| row.value)
            .map_err(PersistenceError::from)
        })
        .await
        .unwrap();
    let expected = match backend {
        Backend::Mysql => "0.050000",
        _ => "50ms",
    };
    assert_eq!(bound, expected);
}

/// The statement bounds exist on PostgreSQL and MariaDB only: `mod postgres` and
/// `mod mysql` of `statement_bounds` run these on each.
mod statement_bounds {
    use marquee_persistence::Backend;

    macro_rules! on_postgres_and_mysql {
        ($($name:ident),* $(,)?) => {
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
                    async fn $name() {
                        super::super::$name(super::Backend::Postgres).await;
                    }
                )*
            }
            mod mysql {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs MariaDB: set MARQUEE_TEST_MYSQL_URL"]
                    async fn $name() {
                        super::super::$name(super::Backend::Mysql).await;
                    }
                )*
            }
        };
    }

    on_postgres_and_mysql!(
        a_statement_past_statement_timeout_is_cancelled_as_busy,
        seeding_runs_past_statement_timeout_and_restores_it,
    );
}
