//! Which connections go back into the pool. A SQLite `TEMP` table lives and dies with its
//! connection, so a pool of one tells by it whether the next caller got the same connection.

use diesel::SqliteConnection;
use diesel::prelude::*;
use marquee_pool::{Pool, PoolConfig, UrlConnector};

use crate::{AppError, quick_config, sqlite_pool};

fn pool_of_one() -> (tempfile::TempDir, Pool<UrlConnector<SqliteConnection>>) {
    sqlite_pool(PoolConfig {
        maximum_pool_size: 1,
        ..quick_config()
    })
}

/// Marks the connection the next unit of work gets.
async fn mark(pool: &Pool<UrlConnector<SqliteConnection>>) {
    pool.run(|conn| {
        diesel::sql_query("CREATE TEMP TABLE marker (n INTEGER)").execute(conn)?;
        Ok::<_, AppError>(())
    })
    .await
    .unwrap();
}

/// Whether the next unit of work gets the marked connection.
async fn same_connection(pool: &Pool<UrlConnector<SqliteConnection>>) -> bool {
    pool.run(|conn| {
        Ok::<_, AppError>(
            diesel::sql_query("SELECT n FROM temp.marker")
                .execute(conn)
                .is_ok(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_after_work_that_succeeded_or_refused() {
    let (_dir, pool) = pool_of_one();
    mark(&pool).await;
    assert!(same_connection(&pool).await);
    let refused = pool.run(|_| Err::<(), _>(AppError::Refused("no"))).await;
    assert!(refused.is_err());
    assert!(
        same_connection(&pool).await,
        "a refusal keeps the connection"
    );
}

#[tokio::test]
async fn a_connection_whose_work_panicked_is_discarded() {
    let (_dir, pool) = pool_of_one();
    mark(&pool).await;
    let _ = pool
        .run(|_| -> Result<(), AppError> { panic!("boom") })
        .await;
    assert!(!same_connection(&pool).await);
}

/// Work that fails because the link is gone (diesel's `ClosedConnection`, anywhere in the
/// error's source chain) has its connection discarded: diesel's `is_broken` would not.
#[tokio::test]
async fn a_connection_found_closed_is_discarded() {
    let (_dir, pool) = pool_of_one();
    mark(&pool).await;
    let lost = pool
        .run(|_| {
            Err::<(), _>(AppError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                Box::new(String::from("server closed the connection unexpectedly")),
            )))
        })
        .await;
    assert!(lost.is_err());
    assert!(!same_connection(&pool).await);
}
