//! Seeding: the demo catalogue once, bulk sets beside existing data.

use chrono::Utc;
use marquee_domain::{CatalogueRepository, ConcertId};
use marquee_persistence::{Backend, DieselCatalogue, SeedPlan};

use crate::{on_each_backend, pool_on, quick_config};

async fn demo_catalogue_only_when_empty(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let report = pool.seed_demo_if_empty().await.unwrap().unwrap();
    assert_eq!(
        (report.concerts, report.schedules, report.seats),
        (120, 480, 24_000)
    );
    assert_eq!(pool.seed_demo_if_empty().await.unwrap(), None);

    // Most schedules are open for booking now; each concert has one that is not yet open.
    let catalogue = DieselCatalogue::new(pool);
    let now = Utc::now();
    let mut open = 0;
    let mut total = 0;
    for id in [1, 60, 120] {
        let schedules = catalogue
            .list_schedules(ConcertId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(schedules.len(), 4);
        for entry in &schedules {
            total += 1;
            open += usize::from(entry.schedule.is_open_for_booking(now));
            assert_eq!((entry.total_seats, entry.available_seats), (50, 50));
            assert!(entry.schedule.starts_at > now);
        }
    }
    assert_eq!((open, total), (9, 12));
}

async fn bulk_seeding_adds_beside_existing_rows(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let plan = SeedPlan {
        concerts: 1_500,
        schedules_per_concert: 3,
        seats_per_schedule: 7,
    };
    let first = pool.seed(plan).await.unwrap();
    assert_eq!(
        (first.concerts, first.schedules, first.seats),
        (1_500, 4_500, 31_500)
    );
    let second = pool.seed(plan).await.unwrap();
    assert_eq!(second.seats, plan.seats());

    let catalogue = DieselCatalogue::new(pool);
    let last = catalogue
        .list_schedules(ConcertId::new(3_000).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.len(), 3);
    assert!(last.iter().all(|s| s.total_seats == 7));
}

on_each_backend!(
    demo_catalogue_only_when_empty,
    bulk_seeding_adds_beside_existing_rows
);

/// Seeding on PostgreSQL leaves the planner's statistics of the catalogue's tables in place,
/// so that the first loads after a bulk seed are planned for the data they read (the
/// schedules listing joins every schedule of a concert to its seats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
async fn seeding_postgresql_refreshes_the_planner_statistics() {
    let (db, pool) = pool_on(Backend::Postgres, quick_config());
    pool.seed(SeedPlan {
        concerts: 3,
        schedules_per_concert: 2,
        seats_per_schedule: 10,
    })
    .await
    .unwrap();
    // pg_stats has rows for a table once ANALYZE has run on it (autovacuum would take up to
    // a minute to get there).
    let analysed = db.count(
        "SELECT count(DISTINCT tablename) AS n FROM pg_stats \
         WHERE schemaname = current_schema() AND tablename IN ('concerts', 'schedules', 'seats')",
    );
    assert_eq!(analysed, 3);
}
