//! [`Runners`]: the pool's own threads, on which its blocking work runs.
//!
//! Why not tokio's blocking pool (`spawn_blocking`): a database call is short (a fraction of
//! a millisecond to a few) and frequent (hundreds a second), so what the hand-over costs
//! matters as much as the call. tokio's pool queues every task behind one lock that the
//! spawning thread and the finishing threads share, and wakes whichever idle thread has
//! waited longest: under load the caller spins on that lock (`sched_yield`), and each call
//! lands on the thread with the coldest cache. Here:
//!
//! - A caller hands its work to one idle thread directly (its own slot, then `unpark`), and
//!   takes the thread that finished most recently (last in, first out), the warmest; threads
//!   that no peak of the load has needed for [`KEEP_ALIVE`] retire.
//! - There are never more threads than the pool has permits (plus those retiring), because
//!   only a caller holding a permit hands work over: no queue, no limit to configure.
//! - Threads carry the pool's name (`{pool_name}-db`, as the kernel truncates it), which is
//!   what `top -H`, `perf` and a debugger show.
//!
//! A panic in the work is caught and returned to the caller, and the thread lives on. Work
//! always runs to its end, whether or not its caller still waits for it.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a thread waits for work before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool's threads. Dropping it lets every thread exit once it has no work.
pub(crate) struct Runners {
    shared: Arc<Shared>,
}

struct Shared {
    /// Threads waiting for work, the most recently finished last.
    idle: Mutex<Vec<Arc<Slot>>>,
    name: String,
    /// Set when the pool is dropped: an idle thread woken then exits.
    closed: AtomicBool,
}

/// One thread's mailbox: the work handed to it, and how to wake it.
struct Slot {
    job: Mutex<Option<Job>>,
    /// Set by the thread itself before it first goes idle, so every caller that finds it
    /// on the idle list can wake it.
    thread: OnceLock<Thread>,
}

/// Why work could not be handed over, or did not return.
#[derive(Debug)]
pub(crate) enum RunError {
    /// No idle thread, and a new one could not be started.
    Spawn(std::io::Error),
    /// The work panicked; the message is the panic's.
    Panicked(String),
}

/// Takes a lock even if a thread panicked while holding it: nothing guarded here can be
/// left half-changed (a push, a pop, a `take`).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runners {
    /// Threads named `{name}-db`.
    pub(crate) fn new(name: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::new()),
                name: format!("{name}-db"),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `work` on one of the pool's threads and returns what it returns. The work starts
    /// at once: on the most recently idle thread, or on a new one if none is idle.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, RunError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            // The caller may be gone; the work has run to its end all the same.
            let _ = done.send(result);
        });
        self.hand_over(job)?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => Err(RunError::Panicked(panic_message(payload.as_ref()))),
            // The job was dropped unrun: only if its thread died, which a caught panic
            // cannot cause.
            Err(_) => Err(RunError::Panicked("the pool's thread stopped".to_owned())),
        }
    }

    /// Puts `job` in an idle thread's slot and wakes it, or starts a thread for it.
    fn hand_over(&self, job: Job) -> Result<(), RunError> {
        let idle = lock(&self.shared.idle).pop();
        if let Some(slot) = idle {
            *lock(&slot.job) = Some(job);
            if let Some(thread) = slot.thread.get() {
                thread.unpark();
            }
            return Ok(());
        }
        let slot = Arc::new(Slot {
            job: Mutex::new(Some(job)),
            thread: OnceLock::new(),
        });
        let shared = Arc::downgrade(&self.shared);
        thread::Builder::new()
            .name(self.shared.name.clone())
            .spawn(move || serve(&slot, &shared))
            .map(drop)
            .map_err(RunError::Spawn)
    }

    /// How many threads wait for work now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        lock(&self.shared.idle).len()
    }
}

impl Drop for Runners {
    fn drop(&mut self) {
        // Wake the idle threads so that they find the pool gone and exit now rather than
        // after KEEP_ALIVE; a busy one exits when its work is done.
        self.shared.closed.store(true, Ordering::Release);
        for slot in lock(&self.shared.idle).drain(..) {
            if let Some(thread) = slot.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// A thread's life: run the work in its slot, go back on the idle list, wait to be handed
/// more; exit when the pool is gone, or after waiting KEEP_ALIVE for nothing.
fn serve(slot: &Arc<Slot>, shared: &Weak<Shared>) {
    slot.thread.get_or_init(thread::current);
    loop {
        let job = lock(&slot.job).take();
        if let Some(job) = job {
            job();
            let Some(shared) = shared.upgrade() else {
                return;
            };
            // Checked under the lock that `drop` drains the list under: either this thread
            // sees the pool closed, or `drop` finds it on the list and wakes it.
            let mut idle = lock(&shared.idle);
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            idle.push(slot.clone());
            continue;
        }
        let waited = Instant::now();
        // A wake-up may be spurious, or an `unpark` meant for work already taken: the loop
        // checks the slot again either way.
        thread::park_timeout(KEEP_ALIVE);
        if waited.elapsed() < KEEP_ALIVE {
            let closed = shared
                .upgrade()
                .is_none_or(|shared| shared.closed.load(Ordering::Acquire));
            if closed && lock(&slot.job).is_none() {
                return;
            }
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut idle = lock(&shared.idle);
        if let Some(at) = idle.iter().position(|other| Arc::ptr_eq(other, slot)) {
            idle.remove(at);
            return;
        }
        // Not on the list: a caller took this thread just now, and its work is on the way.
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_name() -> String {
        thread::current().name().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn work_runs_on_a_named_thread_and_the_last_idle_one_is_reused() {
        let runners = Runners::new("test");
        let (first_name, first) = runners
            .run(|| (current_name(), thread::current().id()))
            .await
            .unwrap();
        assert_eq!(first_name, "test-db");
        // The thread puts itself back on the idle list after answering.
        let one_idle = || async {
            let deadline = Instant::now() + Duration::from_secs(5);
            while runners.idle() == 0 {
                assert!(Instant::now() < deadline, "the thread never became idle");
                tokio::task::yield_now().await;
            }
        };
        one_idle().await;
        let second = runners.run(|| thread::current().id()).await.unwrap();
        assert_eq!(second, first);
        one_idle().await;
        assert_eq!(runners.idle(), 1, "the idle thread was taken, none started");
    }

    #[tokio::test]
    async fn concurrent_work_gets_threads_of_its_own() {
        let runners = Runners::new("test");
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let wait = |barrier: Arc<std::sync::Barrier>| move || barrier.wait().is_leader();
        // All three must run at once to pass the barrier: a queue would deadlock here.
        let (a, b, c) = tokio::join!(
            runners.run(wait(barrier.clone())),
            runners.run(wait(barrier.clone())),
            runners.run(wait(barrier.clone())),
        );
        let leaders = [a.unwrap(), b.unwrap(), c.unwrap()];
        assert_eq!(leaders.iter().filter(|leader| **leader).count(), 1);
    }

    #[tokio::test]
    async fn a_panic_comes_back_as_an_error_and_the_thread_lives_on() {
        let runners = Runners::new("test");
        let panicked = runners
            .run(|| -> u8 { panic!("no answer") })
            .await
            .unwrap_err();
        assert!(
            matches!(&panicked, RunError::Panicked(message) if message == "no answer"),
            "{panicked:?}"
        );
        assert_eq!(runners.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn work_whose_caller_is_gone_still_runs_to_its_end() {
        let runners = Runners::new("test");
        let (finished, done) = std::sync::mpsc::channel();
        let call = runners.run(move || {
            thread::sleep(Duration::from_millis(50));
            finished.send(()).unwrap();
        });
        // Polled once (the work is handed over), then dropped.
        let _ = tokio::time::timeout(Duration::from_millis(1), call).await;
        done.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    /// The threads of this process named `name`, from /proc.
    #[cfg(target_os = "linux")]
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dropped_runners_let_their_idle_threads_exit_at_once() {
        let runners = Runners::new("dropped");
        runners.run(|| ()).await.unwrap();
        assert_eq!(threads_named("dropped-db"), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while runners.idle() == 0 {
            assert!(Instant::now() < deadline, "the thread never became idle");
            tokio::task::yield_now().await;
        }
        drop(runners);
        // Well inside KEEP_ALIVE: the drop woke the thread.
        while threads_named("dropped-db") > 0 {
            assert!(
                Instant::now() < deadline,
                "the idle thread outlived its pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
