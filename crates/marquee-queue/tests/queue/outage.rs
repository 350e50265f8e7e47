//! A Redis that is down or silent fails each operation within the response timeout, and a
//! configuration that cannot work is refused before any I/O.

use std::time::{Duration, Instant};

use marquee_queue::{QueueView, RedisViewConfig, ViewError};

use crate::support::{T0, namespace};

const BOUND: Duration = Duration::from_millis(200);

fn config(url: &str) -> RedisViewConfig {
    RedisViewConfig {
        response_timeout: BOUND,
        connection_timeout: BOUND,
        ..RedisViewConfig::new(url, namespace())
    }
}

/// Runs every operation and returns each error, checking each came within the bound (plus
/// slack for a loaded machine).
async fn every_operation_fails_in_time(view: &QueueView) -> Vec<ViewError> {
    let slack = BOUND + Duration::from_millis(300);
    // A rebuild's steps have their own bound: twenty times the response timeout, at least 2 s.
    let rebuild_slack = (BOUND * 20).max(Duration::from_secs(2)) + Duration::from_millis(300);
    let mut errors = Vec::new();
    macro_rules! timed {
        ($call:expr) => {
            timed!($call, slack)
        };
        ($call:expr, $slack:expr) => {{
            let started = Instant::now();
            let result = $call.await;
            assert!(started.elapsed() < $slack, "took {:?}", started.elapsed());
            errors.push(result.map(drop).expect_err("no Redis, no answer"));
        }};
    }
    timed!(view.poll(1, 1, T0));
    timed!(view.add_waiting(1, 1, 1, T0));
    timed!(view.activate(1, &[(1, T0)]));
    timed!(view.remove(1, &[1]));
    timed!(view.idle(1, T0));
    timed!(view.rebuild(1, &[(1, 1)], &[(2, T0)], T0), rebuild_slack);
    timed!(view.counts(1, T0));
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_every_operation_quickly() {
    // Nothing listens on port 1: the connection is refused.
    let view = QueueView::redis(config("redis://127.0.0.1:1")).unwrap();
    for error in every_operation_fails_in_time(&view).await {
        assert!(
            matches!(error, ViewError::Unavailable(_) | ViewError::Timeout),
            "{error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_times_out() {
    // Accepts connections and reads nothing: a hung server, or a full network buffer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let view = QueueView::redis(config(&format!("redis://127.0.0.1:{port}"))).unwrap();
    for error in every_operation_fails_in_time(&view).await {
        assert!(matches!(error, ViewError::Timeout), "{error:?}");
    }
    holder.abort();
}

#[tokio::test]
async fn a_configuration_that_cannot_work_is_refused() {
    let refused = |config: RedisViewConfig| match QueueView::redis(config) {
        Err(ViewError::Config(reason)) => reason,
        other => panic!("accepted: {other:?}"),
    };
    let base = RedisViewConfig::new("redis://127.0.0.1:6379", "app:v1");
    assert!(QueueView::redis(base.clone()).is_ok());
    for namespace in ["", "app:{v1}", "app}"] {
        let reason = refused(RedisViewConfig {
            namespace: namespace.into(),
            ..base.clone()
        });
        assert!(reason.contains("namespace"), "{reason}");
    }
    refused(RedisViewConfig {
        response_timeout: Duration::ZERO,
        ..base.clone()
    });
    refused(RedisViewConfig {
        connection_timeout: Duration::ZERO,
        ..base.clone()
    });
    let reason = refused(RedisViewConfig {
        url: "http://:s3cr3t@cache".into(),
        ..base.clone()
    });
    assert!(!reason.contains("s3cr3t"), "{reason}");
    // The URL may carry a password: Debug leaves it out.
    let shown = format!(
        "{:?}",
        RedisViewConfig {
            url: "redis://:s3cr3t@cache".into(),
            ..base
        }
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
}
