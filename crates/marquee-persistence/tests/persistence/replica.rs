//! `Databases` against a real streaming replica (a private primary and standby per test, see
//! `marquee_testkit::PrivatePostgres`): which server each read goes to, the WAL fence of
//! seat-state reads, and the fall-backs when the replica lags past `max_lag` or is down.
//!
//! Which server answered is asked of the server itself: `pg_is_in_recovery()` is true on
//! the standby only.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Bool;
use marquee_domain::{CatalogueRepository, ConcertId, ScheduleId, SeatFilter, SeatStatus};
use marquee_persistence::{
    DatabaseUrl, Databases, DbPool, DieselCatalogue, PersistenceError, PoolConfig, ReplicaConfig,
    SeedPlan,
};
use marquee_testkit::PrivatePostgres;

const NEEDS: &str = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN";

/// A primary with a replica, migrated and seeded, and `Databases` over them.
struct Pair {
    pg: PrivatePostgres,
    databases: Databases,
}

fn config() -> PoolConfig {
    PoolConfig {
        maximum_pool_size: 2,
        connection_timeout: Duration::from_secs(2),
        validation_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    }
}

async fn pair(max_lag: Duration) -> Pair {
    let pg = PrivatePostgres::primary_with_replica();
    let url = DatabaseUrl::parse(&pg.primary_url("postgres")).unwrap();
    let primary = tokio::task::spawn_blocking(move || DbPool::build(&url, &config()))
        .await
        .unwrap()
        .unwrap();
    primary.migrate().await.unwrap();
    primary
        .seed(SeedPlan {
            concerts: 2,
            schedules_per_concert: 1,
            seats_per_schedule: 5,
        })
        .await
        .unwrap();
    pg.wait_for_replay();
    let replica = ReplicaConfig::new(
        DatabaseUrl::parse(&pg.replica_url("postgres")).unwrap(),
        &config(),
        max_lag,
    );
    let databases = tokio::task::spawn_blocking(move || Databases::with_replica(primary, replica))
        .await
        .unwrap()
        .unwrap();
    Pair { pg, databases }
}

#[derive(QueryableByName)]
struct Recovery {
    #[diesel(sql_type = Bool)]
    standby: bool,
}

/// Whether a read ran on the standby.
fn on_standby(conn: &mut marquee_persistence::DbConnection) -> Result<bool, PersistenceError> {
    let row: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS standby")
        .get_result(conn)
        .map_err(PersistenceError::from)?;
    Ok(row.standby)
}

/// Waits (at most 10 s) until the lag monitor says the replica is `usable` or not.
async fn until_usable(databases: &Databases, usable: bool) {
    let started = Instant::now();
    while databases.replica_status().unwrap().usable != usable {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica did not become {} within 10 s: {:?}",
            if usable { "usable" } else { "unusable" },
            databases.replica_status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn concert(id: i64) -> ConcertId {
    ConcertId::new(id).unwrap()
}

/// `db_read` reads the replica, so a catalogue load shows what the replica has: with its
/// replay paused, the title as it was, while the primary (`db_write`) has the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn db_read_goes_to_the_replica_and_db_write_to_the_primary() {
    let Pair { pg, databases } = pair(Duration::from_secs(60)).await;
    assert!(databases.replica_status().unwrap().usable, "{NEEDS}");
    assert!(databases.db_read(on_standby).await.unwrap());
    assert!(!databases.db_write().run(on_standby).await.unwrap());

    let catalogue = DieselCatalogue::new(databases.clone());
    let before = catalogue.find_concert(concert(1)).await.unwrap().unwrap();
    pg.pause_replay();
    pg.primary_sql(
        "postgres",
        "UPDATE concerts SET title = 'Moved to Saturday' WHERE id = 1",
    );
    let read = catalogue.find_concert(concert(1)).await.unwrap().unwrap();
    assert_eq!(read.title, before.title, "the load read the replica");
    let primary = DieselCatalogue::new(databases.db_write().clone());
    let written = primary.find_concert(concert(1)).await.unwrap().unwrap();
    assert_eq!(written.title, "Moved to Saturday");

    pg.resume_replay();
    pg.wait_for_replay();
    let caught_up = catalogue.find_concert(concert(1)).await.unwrap().unwrap();
    assert_eq!(caught_up.title, "Moved to Saturday");
}

/// Seat states are read through the WAL fence: on the replica while it has replayed what the
/// primary had written when the read began, on the primary as soon as it has not. A hold made
/// on the primary while the replica's replay is paused (and its lag still within `max_lag`,
/// so only the fence stands between the read and the stale replica) is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn seat_states_are_read_on_the_replica_only_when_it_has_replayed_the_primary() {
    let Pair { pg, databases } = pair(Duration::from_secs(60)).await;
    assert!(databases.db_read_prefer_primary(on_standby).await.unwrap());

    let catalogue = DieselCatalogue::new(databases.clone());
    let schedule = ScheduleId::new(1).unwrap();
    let seats = catalogue
        .list_seats(schedule, SeatFilter::All)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seats[0].status, SeatStatus::Available);

    pg.pause_replay();
    pg.primary_sql(
        "postgres",
        "UPDATE seats SET status = 'HELD', held_by = 7, \
         held_until = (now() AT TIME ZONE 'UTC') + interval '5 minutes' WHERE id = 1",
    );
    // The replica really lags, and the monitor still counts it usable.
    assert_eq!(
        pg.replica_sql("postgres", "SELECT status FROM seats WHERE id = 1")
            .trim(),
        "AVAILABLE"
    );
    assert!(databases.replica_status().unwrap().usable);
    assert!(databases.db_read(on_standby).await.unwrap());

    assert!(!databases.db_read_prefer_primary(on_standby).await.unwrap());
    let seats = catalogue
        .list_seats(schedule, SeatFilter::All)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seats[0].status, SeatStatus::Held);
    let held = catalogue
        .list_seats(schedule, SeatFilter::Only(SeatStatus::Held))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.len(), 1);
    let schedules = catalogue.list_schedules(concert(1)).await.unwrap().unwrap();
    assert_eq!(schedules[0].available_seats, 4);

    pg.resume_replay();
    pg.wait_for_replay();
    assert!(databases.db_read_prefer_primary(on_standby).await.unwrap());
}

/// A replica whose lag passes `max_lag` is not read until it catches up; the lag is measured
/// against the primary's WAL, so an idle primary does not make it grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn a_replica_that_lags_past_max_lag_is_not_read() {
    let Pair { pg, databases } = pair(Duration::from_secs(1)).await;
    // Idle for longer than max_lag: still usable, no lag.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = databases.replica_status().unwrap();
    assert!(status.usable, "{status:?}");
    assert!(status.lag.unwrap() < Duration::from_secs(1), "{status:?}");

    let catalogue = DieselCatalogue::new(databases.clone());
    pg.pause_replay();
    pg.primary_sql(
        "postgres",
        "UPDATE concerts SET title = 'Sold out' WHERE id = 2",
    );
    until_usable(&databases, false).await;
    let status = databases.replica_status().unwrap();
    assert!(status.lag.unwrap() > Duration::from_secs(1), "{status:?}");
    assert!(!databases.db_read(on_standby).await.unwrap());
    let read = catalogue.find_concert(concert(2)).await.unwrap().unwrap();
    assert_eq!(read.title, "Sold out", "read on the primary");

    pg.resume_replay();
    until_usable(&databases, true).await;
    assert!(databases.db_read(on_standby).await.unwrap());
}

/// A replica that goes down costs a read at most the replica pool's short wait, and once
/// the monitor has seen it (within a sample or two) none: reads go straight to the primary.
/// When it is back, it is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn a_replica_that_is_down_is_skipped_quickly() {
    let Pair { pg, databases } = pair(Duration::from_secs(1)).await;
    let catalogue = DieselCatalogue::new(databases.clone());
    pg.stop_replica();

    let started = Instant::now();
    let read = catalogue.find_concert(concert(1)).await.unwrap();
    assert!(read.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the first read after the replica went down took {:?}",
        started.elapsed()
    );
    until_usable(&databases, false).await;
    for id in [1, 2, 1, 2] {
        let started = Instant::now();
        assert!(catalogue.find_concert(concert(id)).await.unwrap().is_some());
        let schedule = ScheduleId::new(id).unwrap();
        assert!(
            catalogue
                .list_seats(schedule, SeatFilter::All)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "two reads with the replica known down took {:?}",
            started.elapsed()
        );
    }
    assert!(!databases.db_read(on_standby).await.unwrap());

    pg.start_replica();
    until_usable(&databases, true).await;
    assert!(databases.db_read(on_standby).await.unwrap());
}

/// A replica that is down when the service starts is no error: reads go to the primary, and
/// to the replica once it answers (its pool opens then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn a_replica_down_at_start_is_read_once_it_answers() {
    let pg = PrivatePostgres::primary_with_replica();
    pg.stop_replica();
    let url = DatabaseUrl::parse(&pg.primary_url("postgres")).unwrap();
    let primary = tokio::task::spawn_blocking(move || DbPool::build(&url, &config()))
        .await
        .unwrap()
        .unwrap();
    let replica = ReplicaConfig::new(
        DatabaseUrl::parse(&pg.replica_url("postgres")).unwrap(),
        &config(),
        Duration::from_secs(1),
    );
    let databases = tokio::task::spawn_blocking(move || Databases::with_replica(primary, replica))
        .await
        .unwrap()
        .unwrap();
    assert!(!databases.replica_status().unwrap().usable);
    assert!(databases.replica_pool().is_none());
    assert!(!databases.db_read(on_standby).await.unwrap());

    pg.start_replica();
    until_usable(&databases, true).await;
    assert!(databases.replica_pool().is_some());
    assert!(databases.db_read(on_standby).await.unwrap());
}
