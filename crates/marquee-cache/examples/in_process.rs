//! An in-process cache in front of a slow source: a weather service whose forecasts take
//! 100 ms to compute. A hundred concurrent requests for one city cost one computation, a
//! city that does not exist is remembered as such, and an update replaces the value.
//!
//! Runs without Redis, and without the crate's `redis` feature:
//!
//! ```text
//! cargo run -p marquee-cache --example in_process --no-default-features
//! ```

#![allow(clippy::print_stdout)] // An example prints what it shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use marquee_cache::{Cache, CacheConfig, CachePolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Forecast {
    city: String,
    celsius: i32,
}

#[derive(Debug, thiserror::Error)]
#[error("the forecast service is unavailable")]
struct Unavailable;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = CacheConfig::default();
    config.namespace = "weather:v1".to_owned();
    config.metrics_prefix = "weather_cache".to_owned();
    let cache = Cache::local(config)?;

    let computations = Arc::new(AtomicUsize::new(0));
    let forecasts = cache
        .group::<String, Forecast>("forecast")
        .policy(CachePolicy::with_ttl(
            Duration::from_secs(60),
            Duration::from_secs(15),
        ))
        .build({
            let computations = computations.clone();
            move |city: String| {
                let computations = computations.clone();
                async move {
                    computations.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if city == "Atlantis" {
                        return Ok::<_, Unavailable>(None);
                    }
                    let celsius = i32::try_from(city.len()).unwrap_or(0);
                    Ok(Some(Forecast { city, celsius }))
                }
            }
        })?;

    let started = Instant::now();
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let forecasts = forecasts.clone();
            tokio::spawn(async move { forecasts.get(&"Lisbon".to_owned()).await })
        })
        .collect();
    for request in requests {
        let forecast = request.await??;
        assert_eq!(forecast.map(|f| f.celsius), Some(6));
    }
    println!(
        "100 concurrent reads of Lisbon: {} computation, {:?}",
        computations.load(Ordering::SeqCst),
        started.elapsed()
    );

    let atlantis = "Atlantis".to_owned();
    assert_eq!(forecasts.get(&atlantis).await?, None);
    assert_eq!(forecasts.get(&atlantis).await?, None);
    println!(
        "two reads of a city that does not exist: {} computations in all",
        computations.load(Ordering::SeqCst)
    );

    let lisbon = "Lisbon".to_owned();
    let corrected = Forecast {
        city: lisbon.clone(),
        celsius: 21,
    };
    forecasts.update(&lisbon, Some(corrected.clone())).await;
    assert_eq!(forecasts.get(&lisbon).await?, Some(corrected));
    println!(
        "after an update: Lisbon at 21 °C, still {} computations",
        computations.load(Ordering::SeqCst)
    );
    assert_eq!(computations.load(Ordering::SeqCst), 2);
    Ok(())
}
