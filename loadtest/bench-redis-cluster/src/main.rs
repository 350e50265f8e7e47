//! The cache's Redis workload on a local six-node cluster, through (a) one shared, multiplexed
//! redis `ClusterConnection` and (b) a deadpool-redis cluster pool with a connection checked
//! out per operation: operations per second and latency percentiles, rounds interleaved.
//!
//! The workload is the cache's hit path and its load path's first script: per task, three
//! `GET`s of a hash-tagged key for each `EVAL` of the script that reads a key and its
//! generation together, over 1,000 keys spread across every slot range.
//!
//! Usage: `bench-redis-cluster ROUNDS SECONDS TASKS POOL_SIZE`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use marquee_testkit::RedisCluster;
use redis::aio::ConnectionLike;

const KEYS: usize = 1000;
const GET_WITH_GENERATION: &str = "local generation = tonumber(redis.call('GET', KEYS[1])) or 0 \
                                   return {redis.call('GET', KEYS[2]), generation}";

/// The `i`-th operation of a task on `connection`.
async fn operation(connection: &mut impl ConnectionLike, i: usize, key: usize) {
    let entry = format!("bench:{{{key}}}");
    if i % 4 == 3 {
        let _: (Option<Vec<u8>>, i64) = redis::cmd("EVAL")
            .arg(GET_WITH_GENERATION)
            .arg(2)
            .arg(format!("{entry}:generation"))
            .arg(&entry)
            .query_async(connection)
            .await
            .expect("EVAL");
    } else {
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&entry)
            .query_async(connection)
            .await
            .expect("GET");
    }
}

#[derive(Clone, Copy)]
enum Client {
    Shared,
    Pool,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Self::Shared => "redis ClusterConnection, shared",
            Self::Pool => "deadpool-redis cluster pool",
        }
    }
}

struct Run {
    ops: usize,
    seconds: f64,
    latencies_us: Vec<u32>,
}

async fn run(
    client: Client,
    shared: &redis::cluster_async::ClusterConnection,
    pool: &deadpool_redis::cluster::Pool,
    tasks: usize,
    duration: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let (stop, shared, pool) = (stop.clone(), shared.clone(), pool.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = (task * 7919 + i * 104_729) % KEYS;
                    let began = Instant::now();
                    match client {
                        Client::Shared => {
                            let mut connection = shared.clone();
                            operation(&mut connection, i, key).await;
                        }
                        Client::Pool => {
                            let mut connection = pool.get().await.expect("a pooled connection");
                            operation(&mut *connection, i, key).await;
                        }
                    }
                    latencies.push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for worker in workers {
        latencies_us.extend(worker.await.unwrap());
    }
    Run {
        ops: latencies_us.len(),
        seconds: started.elapsed().as_secs_f64(),
        latencies_us,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("ROUNDS SECONDS TASKS POOL_SIZE"))
        .collect();
    let [rounds, seconds, tasks, pool_size] = args[..] else {
        panic!("usage: bench-redis-cluster ROUNDS SECONDS TASKS POOL_SIZE");
    };
    let cluster = RedisCluster::start();
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();

    let client = redis::cluster::ClusterClient::new(seeds.clone()).unwrap();
    let shared = client.get_async_connection().await.unwrap();
    let mut config = deadpool_redis::cluster::Config::from_urls(seeds);
    config.pool = Some(deadpool_redis::PoolConfig::new(pool_size));
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();

    let mut setup = shared.clone();
    for key in 0..KEYS {
        let _: () = redis::cmd("SET")
            .arg(format!("bench:{{{key}}}"))
            .arg(vec![b'x'; 600])
            .query_async(&mut setup)
            .await
            .unwrap();
    }
    // Warm both: the pool opens its connections, the shared connection its node links.
    run(Client::Shared, &shared, &pool, tasks, Duration::from_secs(1)).await;
    run(Client::Pool, &shared, &pool, tasks, Duration::from_secs(1)).await;

    println!(
        "{tasks} tasks, {seconds} s per run, {rounds} rounds interleaved; pool max_size {pool_size}"
    );
    println!("| round | client | ops/s | p50 ms | p99 ms |");
    println!("| --- | --- | --- | --- | --- |");
    let mut totals = [(0usize, 0f64), (0, 0.0)];
    for round in 1..=rounds {
        // Interleaved, and the order alternates, so neither client always runs first.
        let order = if round % 2 == 1 {
            [Client::Shared, Client::Pool]
        } else {
            [Client::Pool, Client::Shared]
        };
        for client in order {
            let mut result = run(client, &shared, &pool, tasks, Duration::from_secs(seconds as u64)).await;
            result.latencies_us.sort_unstable();
            let slot = &mut totals[client as usize];
            slot.0 += result.ops;
            slot.1 += result.seconds;
            println!(
                "| {round} | {} | {:.0} | {:.2} | {:.2} |",
                client.name(),
                result.ops as f64 / result.seconds,
                percentile(&result.latencies_us, 0.50),
                percentile(&result.latencies_us, 0.99),
            );
        }
    }
    for client in [Client::Shared, Client::Pool] {
        let (ops, secs) = totals[client as usize];
        println!("{}: {:.0} ops/s over all rounds", client.name(), ops as f64 / secs);
    }
}
