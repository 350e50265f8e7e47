//! Last-seen times for the idle drop, and the counts for metrics.

use crate::support::{T0, Tier, view};

const Q: u64 = 13;

async fn idle_lists_waiting_members_not_seen_since(tier: Tier) {
    let (view, _) = view(tier);
    view.rebuild(Q, &[(1, 1), (2, 2)], &[], T0).await.unwrap();
    view.add_waiting(Q, 3, 3, T0 + 1000).await.unwrap();
    view.add_waiting(Q, 4, 4, T0 + 1500).await.unwrap();
    view.poll(Q, 1, T0 + 2000).await.unwrap();

    assert_eq!(view.idle(Q, T0).await.unwrap(), Vec::<u64>::new());
    assert_eq!(view.idle(Q, T0 + 1001).await.unwrap(), [2, 3]);
    assert_eq!(view.idle(Q, T0 + 3000).await.unwrap(), [2, 3, 4, 1]);
    // Admitted and removed members are nobody's idle candidates.
    view.activate(Q, &[(2, T0 + 60_000)]).await.unwrap();
    view.remove(Q, &[3]).await.unwrap();
    assert_eq!(view.idle(Q, T0 + 3000).await.unwrap(), [4, 1]);
    // A poll of an admitted member records nothing.
    view.poll(Q, 2, T0 + 4000).await.unwrap();
    assert_eq!(view.idle(Q, T0 + 5000).await.unwrap(), [4, 1]);
}

async fn counts_leave_out_ended_admissions(tier: Tier) {
    let (view, _) = view(tier);
    assert_eq!(view.counts(Q, T0).await.unwrap(), (0, 0));
    view.rebuild(Q, &[(1, 1), (2, 2), (3, 3)], &[(4, T0 + 1000)], T0)
        .await
        .unwrap();
    view.activate(Q, &[(1, T0 + 5000)]).await.unwrap();
    assert_eq!(view.counts(Q, T0).await.unwrap(), (2, 2));
    // 4's admission ends at T0 + 1000: not counted from then on.
    assert_eq!(view.counts(Q, T0 + 999).await.unwrap(), (2, 2));
    assert_eq!(view.counts(Q, T0 + 1000).await.unwrap(), (2, 1));
    assert_eq!(view.counts(Q, T0 + 5000).await.unwrap(), (2, 0));
}

crate::on_each_tier!(
    idle_lists_waiting_members_not_seen_since,
    counts_leave_out_ended_admissions
);
