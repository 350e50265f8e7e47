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

on_each_backend!(
    pages_and_totals,
    absent_things_are_none,
    availability_follows_the_clock
);

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
