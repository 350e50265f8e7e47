//! How long a rebuild of a ticket opening's line takes, and a poll at its tail, in process
//! and on Redis.
//!
//! ```text
//! cargo run --release -p marquee-queue --example rebuild [redis://127.0.0.1:6379] [members]
//! ```
//!
//! The Redis run uses a namespace of its own and deletes its keys when done.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};

use marquee_queue::{Poll, QueueView, RedisViewConfig};

const QUEUE: u64 = 1;
const POLLS: u32 = 2000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let members: u64 = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let namespace = format!("queue-bench:{}", std::process::id());
    let config = RedisViewConfig {
        response_timeout: Duration::from_secs(2),
        ..RedisViewConfig::new(url.clone(), namespace.clone())
    };
    let now = 1_700_000_000_000;
    let waiting: Vec<(u64, i64)> = (1..=members).map(|m| (m, m as i64)).collect();
    let active: Vec<(u64, i64)> = (0..500).map(|m| (members + 1 + m, now + 60_000)).collect();

    for (name, view) in [
        ("local", QueueView::local()),
        ("redis", QueueView::redis(config)?),
    ] {
        let started = Instant::now();
        view.rebuild(QUEUE, &waiting, &active, now).await?;
        let rebuild = started.elapsed();
        // Again over the first: the swap replaces a full view.
        let started = Instant::now();
        view.rebuild(QUEUE, &waiting, &active, now).await?;
        let again = started.elapsed();

        let started = Instant::now();
        for _ in 0..POLLS {
            let poll = view.poll(QUEUE, members, now).await?;
            assert_eq!(poll, Poll::Waiting { position: members });
        }
        let per_poll = started.elapsed() / POLLS;
        println!(
            "{name}: rebuild of {members} waiting + {} active {rebuild:?} (over a full view \
             {again:?}); poll at the tail {per_poll:?} (mean of {POLLS}, one at a time)",
            active.len()
        );
    }

    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut connection)
        .await?;
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut connection)
        .await?;
    Ok(())
}
