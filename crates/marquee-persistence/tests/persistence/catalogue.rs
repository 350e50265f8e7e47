//! `DieselCatalogue` on both backends: the same answers from the same data.

use marquee_domain::{
    CatalogueRepository, ConcertId, PageRequest, ScheduleId, SeatFilter, SeatStatus,
};
use marquee_persistence::{Backend, DieselCatalogue, SeedPlan};

use crate::{on_each_backend, pool_on, quick_config};

async fn pages_and_totals(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let catalogue = DieselCatalogue::new(pool.clone());
    let empty = catalogue
        .list_concerts(PageRequest::default())
        .await
        .unwrap();
    assert_eq!((empty.items.len(), empty.total), (0, 0));

    pool.seed(SeedPlan {
        concerts: 25,
        schedules_per_concert: 2,
        seats_per_schedule: 3,
    })
    .await
    .unwrap();
    let page = catalogue
        .list_concerts(PageRequest::new(1, 10).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total, 25);
    let ids: Vec<i64> = page.items.iter().map(|c| c.id.get()).collect();
    assert_eq!(ids, (11..=20).collect::<Vec<_>>());
    let tail = catalogue
        .list_concerts(PageRequest::new(2, 10).unwrap())
        .await
        .unwrap();
    assert_eq!(tail.items.len(), 5);
}

async fn absent_things_are_none(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let catalogue = DieselCatalogue::new(pool);
    let missing = ConcertId::new(404).unwrap();
    assert_eq!(catalogue.find_concert(missing).await.unwrap(), None);
    assert_eq!(catalogue.list_schedules(missing).await.unwrap(), None);
    let schedule = ScheduleId::new(404).unwrap();
    assert_eq!(
        catalogue
            .list_seats(schedule, SeatFilter::All)
            .await
            .unwrap(),
        None
    );
}

/// Holds that ran out read as available in counts and listings alike.
async fn availability_follows_the_clock(backend: Backend) {
    let (db, pool) = pool_on(backend, quick_config());
    pool.seed(SeedPlan {
        concerts: 1,
        schedules_per_concert: 2,
        seats_per_schedule: 4,
    })
    .await
    .unwrap();
    db.execute(
        "UPDATE seats SET status = 'HELD', held_by = 1, held_until = '2999-01-01 00:00:00' WHERE schedule_id = 1 AND number = 1;
         UPDATE seats SET status = 'HELD', held_by = 1, held_until = '2000-01-01 00:00:00' WHERE schedule_id = 1 AND number = 2;
         UPDATE seats SET status = 'SOLD' WHERE schedule_id = 1 AND number = 3;",
    );
    let catalogue = DieselCatalogue::new(pool);
    let concert = ConcertId::new(1).unwrap();
    let schedules = catalogue.list_schedules(concert).await.unwrap().unwrap();
    assert_eq!(schedules.len(), 2);
    assert_eq!(
        (schedules[0].total_seats, schedules[0].available_seats),
        (4, 2)
    );
    assert_eq!(
        (schedules[1].total_seats, schedules[1].available_seats),
        (4, 4)
    );

    let schedule = ScheduleId::new(1).unwrap();
    let all = catalogue
        .list_seats(schedule, SeatFilter::All)
        .await
        .unwrap()
        .unwrap();
    let statuses: Vec<SeatStatus> = all.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            SeatStatus::Held,
            SeatStatus::Available,
            SeatStatus::Sold,
            SeatStatus::Available
        ]
    );
    for status in [SeatStatus::Available, SeatStatus::Held, SeatStatus::Sold] {
        let listed = catalogue
            .list_seats(schedule, SeatFilter::Only(status))
            .await
            .unwrap()
            .unwrap();
        let expected: Vec<i32> = all
            .iter()
            .filter(|s| s.status == status)
            .map(|s| s.number)
            .collect();
        assert_eq!(
            listed.iter().map(|s| s.number).collect::<Vec<_>>(),
            expected,
            "{status:?}"
        );
    }
}

/// A schedule without seats is listed with counts of zero, in its place among the others;
/// a concert without schedules lists none, and is not taken for a missing one.
async fn schedules_without_seats_count_zero(backend: Backend) {
    let (db, pool) = pool_on(backend, quick_config());
    pool.seed(SeedPlan {
        concerts: 2,
        schedules_per_concert: 3,
        seats_per_schedule: 4,
    })
    .await
    .unwrap();
    let catalogue = DieselCatalogue::new(pool);
    let first = ConcertId::new(1).unwrap();
    let before: Vec<i64> = catalogue
        .list_schedules(first)
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|listed| listed.schedule.id.get())
        .collect();
    db.execute(&format!(
        "DELETE FROM seats WHERE schedule_id = {};
         UPDATE seats SET status = 'SOLD' WHERE schedule_id = {} AND number = 1;
         DELETE FROM seats WHERE schedule_id IN (SELECT id FROM schedules WHERE concert_id = 2);
         DELETE FROM schedules WHERE concert_id = 2;",
        before[1], before[2]
    ));

    let listed = catalogue.list_schedules(first).await.unwrap().unwrap();
    let ids: Vec<i64> = listed.iter().map(|l| l.schedule.id.get()).collect();
    assert_eq!(ids, before, "every schedule, in the same order");
    let counts: Vec<(i64, i64)> = listed
        .iter()
        .map(|l| (l.total_seats, l.available_seats))
        .collect();
    assert_eq!(counts, [(4, 4), (0, 0), (4, 3)]);
    assert_eq!(
        catalogue
            .list_schedules(ConcertId::new(2).unwrap())
            .await
            .unwrap(),
        Some(Vec::new())
    );
}

on_each_backend!(
    pages_and_totals,
    absent_things_are_none,
    availability_follows_the_clock,
    schedules_without_seats_count_zero
);

/// A concert's schedules and their seat counts come from one statement, prepared once and
/// reused: a reload of the listing, which every hold causes, is one round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
async fn the_schedules_listing_is_one_prepared_statement() {
    use marquee_persistence::PoolConfig;

    // One connection, so every statement below was prepared on the one that is asked.
    let (_db, pool) = pool_on(
        Backend::Postgres,
        PoolConfig {
            maximum_pool_size: 1,
            ..quick_config()
        },
    );
    pool.seed(SeedPlan::DEMO).await.unwrap();
    let catalogue = DieselCatalogue::new(pool.clone());
    for concert in [1, 2, 1] {
        let listed = catalogue
            .list_schedules(ConcertId::new(concert).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!listed.is_empty());
    }
    let statements = crate::prepared_statements(&pool).await;
    // The seeding's statements read the tables' largest ids; the listing is the one that
    // reads seats.
    let reads: Vec<&String> = statements
        .iter()
        .filter(|s| s.contains("\"seats\""))
        .collect();
    assert_eq!(reads.len(), 1, "{statements:#?}");
    assert!(
        reads[0].contains("FROM (\"schedules\" LEFT OUTER JOIN \"seats\""),
        "{}",
        reads[0]
    );
}

/// Read replicas are PostgreSQL's: `Databases` refuses one for a SQLite primary, before it
/// connects anywhere.
#[test]
fn a_replica_is_refused_off_postgresql() {
    use marquee_persistence::{DatabaseUrl, Databases, PersistenceError, ReplicaConfig};
    let (_db, pool) = pool_on(Backend::Sqlite, quick_config());
    let replica = ReplicaConfig::new(
        DatabaseUrl::parse("postgres://127.0.0.1:1/none").unwrap(),
        &quick_config(),
        std::time::Duration::from_secs(1),
    );
    let error = Databases::with_replica(pool, replica).unwrap_err();
    assert!(matches!(error, PersistenceError::Replica(_)), "{error:?}");
    assert!(error.to_string().contains("PostgreSQL only"), "{error}");
}
