//! Single-flight: concurrent misses for one key in one process share one load.
//!
//! The first caller for a key becomes the leader and starts the load as its own task, so
//! that a leader whose request is cancelled (the client went away) does not cancel the load
//! everyone else is waiting for. Followers wait on a watch channel for the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The flights in progress, by key.
#[derive(Debug)]
pub(crate) struct Flights<T> {
    map: Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>,
}

/// Who a caller is for a key.
pub(crate) enum Role<T> {
    /// Run the load and report through [`Leader::finish`].
    Leader(Leader<T>),
    /// Wait for the leader's outcome.
    Follower(watch::Receiver<Option<T>>),
}

/// The right, and the duty, to publish a key's outcome. Dropping it without finishing (the
/// load panicked) removes the flight; followers then see the channel close.
pub(crate) struct Leader<T> {
    key: String,
    sender: watch::Sender<Option<T>>,
    map: Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>,
}

impl<T: Clone> Flights<T> {
    pub fn new() -> Self {
        Self {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Detaches the flight of `key`, if there is one: callers from now on start a new
    /// flight. The detached leader still finishes, for the callers that joined it. After a
    /// write, a read must not join a load that may have read the data before it.
    pub fn forget(&self, key: &str) {
        let mut map = match self.map.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(key);
    }

    pub fn join(&self, key: &str) -> Role<T> {
        let mut map = match self.map.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(receiver) = map.get(key) {
            return Role::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        map.insert(key.to_owned(), receiver);
        Role::Leader(Leader {
            key: key.to_owned(),
            sender,
            map: self.map.clone(),
        })
    }
}

impl<T> Leader<T> {
    /// Publishes the outcome. The caller must have stored the value in the cache first: a
    /// request arriving after the flight is removed then finds it there.
    pub fn finish(self, outcome: T) {
        self.remove_own();
        let _ = self.sender.send(Some(outcome));
    }

    /// Removes this flight from the map, but never a newer flight of the same key (one
    /// started after this one was forgotten).
    fn remove_own(&self) {
        let mut map = match self.map.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map
            .get(&self.key)
            .is_some_and(|receiver| receiver.same_channel(&self.sender.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl<T> Drop for Leader<T> {
    fn drop(&mut self) {
        // Idempotent: after `finish` our flight is gone already.
        self.remove_own();
    }
}

/// Waits for a leader's outcome; `None` if the leader died without one.
pub(crate) async fn wait<T: Clone>(mut receiver: watch::Receiver<Option<T>>) -> Option<T> {
    receiver
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|outcome| outcome.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first two callers for `k`: a leader and its follower.
    fn leader_and_follower(flights: &Flights<u32>) -> (Leader<u32>, watch::Receiver<Option<u32>>) {
        let Role::Leader(leader) = flights.join("k") else {
            panic!("the first caller leads")
        };
        let Role::Follower(follower) = flights.join("k") else {
            panic!("the second caller follows")
        };
        (leader, follower)
    }

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let flights: Flights<u32> = Flights::new();
        let (leader, follower) = leader_and_follower(&flights);
        let waiting = tokio::spawn(wait(follower));
        leader.finish(7);
        assert_eq!(waiting.await.unwrap(), Some(7));
        assert!(
            matches!(flights.join("k"), Role::Leader(_)),
            "a new flight after finish"
        );
    }

    #[tokio::test]
    async fn a_forgotten_flight_leaves_the_next_one_alone() {
        let flights: Flights<u32> = Flights::new();
        let (old, joined) = leader_and_follower(&flights);
        flights.forget("k");
        let Role::Leader(new) = flights.join("k") else {
            panic!("after forget, a caller leads a new flight")
        };
        old.finish(1);
        assert_eq!(
            wait(joined).await,
            Some(1),
            "the old flight's callers get its answer"
        );
        let Role::Follower(later) = flights.join("k") else {
            panic!("the old leader's finish did not remove the new flight")
        };
        new.finish(2);
        assert_eq!(wait(later).await, Some(2));
    }

    #[tokio::test]
    async fn a_dead_leader_releases_its_followers() {
        let flights: Flights<u32> = Flights::new();
        let leader = flights.join("k");
        let Role::Follower(follower) = flights.join("k") else {
            panic!("follows")
        };
        drop(leader);
        assert_eq!(wait(follower).await, None);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }
}
