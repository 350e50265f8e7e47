//! Rebuilding a queue's view from the source of truth: whole, atomic, and at the size of a
//! ticket opening.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use marquee_queue::Poll;

use crate::support::{T0, Tier, keys, view};

const Q: u64 = 11;

async fn a_rebuild_replaces_the_view_and_keeps_seen_times(tier: Tier) {
    let (view, namespace) = view(tier);
    view.rebuild(Q, &[(1, 1), (2, 2), (3, 3)], &[(4, T0 + 9000)], T0)
        .await
        .unwrap();
    view.poll(Q, 1, T0 + 5000).await.unwrap();
    view.poll(Q, 3, T0 + 6000).await.unwrap();

    // 3 was admitted, 4's admission is gone, 5 is new; 2 stays unseen since the first
    // rebuild, 1 keeps its poll.
    view.rebuild(Q, &[(1, 1), (2, 2), (5, 5)], &[(3, T0 + 20_000)], T0 + 8000)
        .await
        .unwrap();
    assert_eq!(view.idle(Q, T0 + 7000).await.unwrap(), [2, 1]);
    assert_eq!(view.idle(Q, T0 + 8001).await.unwrap(), [2, 1, 5]);
    assert_eq!(
        view.poll(Q, 3, T0 + 8000).await.unwrap(),
        Poll::Active {
            expires_ms: T0 + 20_000
        }
    );
    assert_eq!(view.poll(Q, 4, T0 + 8000).await.unwrap(), Poll::Absent);
    assert_eq!(
        view.poll(Q, 5, T0 + 8000).await.unwrap(),
        Poll::Waiting { position: 3 }
    );
    assert_eq!(view.counts(Q, T0 + 8000).await.unwrap(), (3, 1));

    // An empty rebuild empties the view but leaves it built.
    view.rebuild(Q, &[], &[], T0 + 9000).await.unwrap();
    assert_eq!(view.poll(Q, 1, T0 + 9000).await.unwrap(), Poll::Absent);
    assert_eq!(view.counts(Q, T0 + 9000).await.unwrap(), (0, 0));
    if let Some(namespace) = namespace {
        // Nothing left behind: no scratch keys, no empty sets.
        assert_eq!(
            keys(&namespace).await,
            [format!("{namespace}:queue:{{{Q}}}:built")]
        );
    }
}

/// 20,000 waiting members (the load test's opening), polled at the tail.
async fn a_rebuild_of_twenty_thousand_gives_the_tail_its_position(tier: Tier) {
    let (view, namespace) = view(tier);
    let waiting: Vec<(u64, i64)> = (1..=20_000).map(|m| (m, m as i64)).collect();
    let active: Vec<(u64, i64)> = (20_001..=20_500).map(|m| (m, T0 + 60_000)).collect();
    view.rebuild(Q, &waiting, &active, T0).await.unwrap();

    for member in [20_000, 19_999, 10_000, 1] {
        assert_eq!(
            view.poll(Q, member, T0).await.unwrap(),
            Poll::Waiting { position: member }
        );
    }
    assert_eq!(view.counts(Q, T0).await.unwrap(), (20_000, 500));
    let front: Vec<(u64, i64)> = (1..=100).map(|m| (m, T0 + 60_000)).collect();
    view.activate(Q, &front).await.unwrap();
    view.remove(Q, &(101..=200).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        view.poll(Q, 20_000, T0).await.unwrap(),
        Poll::Waiting { position: 19_800 }
    );
    assert_eq!(view.counts(Q, T0).await.unwrap(), (19_800, 600));
    if let Some(namespace) = namespace {
        assert_eq!(keys(&namespace).await.len(), 4, "no scratch keys remain");
    }
}

/// Polls during a rebuild see the old view or the new one, never a view half written.
async fn a_rebuild_is_seen_whole_or_not_at_all(tier: Tier) {
    let (view, _) = view(tier);
    let old: Vec<(u64, i64)> = (1..=20_000).map(|m| (m, m as i64)).collect();
    view.rebuild(Q, &old, &[], T0).await.unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (view, done) = (view.clone(), done.clone());
        tokio::spawn(async move {
            let mut polls = Vec::new();
            while !done.load(Ordering::SeqCst) {
                polls.push(view.poll(Q, 20_000, T0).await.unwrap());
                tokio::task::yield_now().await;
            }
            polls
        })
    };
    // The new view: the first 5,000 are gone, the rest move up.
    view.rebuild(Q, &old[5000..], &[], T0).await.unwrap();
    done.store(true, Ordering::SeqCst);
    let polls = poller.await.unwrap();
    assert!(!polls.is_empty());
    for poll in polls {
        assert!(
            matches!(
                poll,
                Poll::Waiting {
                    position: 20_000 | 15_000
                }
            ),
            "{poll:?}"
        );
    }
    assert_eq!(
        view.poll(Q, 20_000, T0).await.unwrap(),
        Poll::Waiting { position: 15_000 }
    );
}

crate::on_each_tier!(
    a_rebuild_replaces_the_view_and_keeps_seen_times,
    a_rebuild_of_twenty_thousand_gives_the_tail_its_position,
    a_rebuild_is_seen_whole_or_not_at_all
);
