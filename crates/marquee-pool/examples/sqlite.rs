//! A pool of two SQLite connections, run into saturation: the third caller gets
//! `PoolError::Busy` after `connection_timeout`, and the pool serves again once the work ends.
//!
//! `cargo run -p marquee-pool --example sqlite`
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use diesel::SqliteConnection;
use diesel::prelude::*;
use marquee_pool::{Pool, PoolConfig, PoolError, UrlConnector};

/// The example's own error type: the pool's failures and diesel's, as any caller has.
#[derive(Debug, thiserror::Error)]
enum ExampleError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("example.sqlite3");
    let connector = UrlConnector::<SqliteConnection>::new(file.to_string_lossy());
    let config = PoolConfig {
        pool_name: "example".into(),
        maximum_pool_size: 2,
        connection_timeout: Duration::from_millis(500),
        validation_timeout: Duration::from_millis(250),
        ..PoolConfig::default()
    };
    let pool = tokio::task::spawn_blocking(move || Pool::build(connector, &config)).await??;
    println!("built: {:?}", pool.state());

    let holders: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|_| {
                    std::thread::sleep(Duration::from_secs(1));
                    Ok::<_, PoolError>(())
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("both connections held: {:?}", pool.state());

    let started = Instant::now();
    let third = pool.run(|_| Ok::<_, PoolError>(())).await;
    println!("a third caller after {:?}: {third:?}", started.elapsed());

    for holder in holders {
        holder.await??;
    }
    let answer: i32 = pool
        .run(|conn| {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("6 * 7"))
                .get_result(conn)
                .map_err(ExampleError::from)
        })
        .await?;
    println!("after the work ended: {answer}, {:?}", pool.state());
    Ok(())
}
