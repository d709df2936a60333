//! Model-checks the CPU partner thread (`src/cpu/pair.rs`) with loom: the file is included as
//! it is, next to a `pair_sync` that gives it loom's atomics, mutexes and threads (and a small
//! `SPIN`, so that the partner parks after two idle polls), and each model below runs under
//! `loom::model`, which explores the interleavings of the caller and the partner and the values
//! each atomic load may read. Data the closures share through [`Tracked`] cells is checked for
//! a happens-before edge between each write and the accesses after it, which is what `join`'s
//! orderings must give the closure's captures and its result slot.
//!
//! Built without the test harness (`harness = false` in Cargo.toml), so that `pair.rs`'s own
//! unit tests (which run real threads) are not run here: `main` runs the models, those whose
//! names contain a filter argument, or all of them.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused))]

/// What `pair.rs` takes from its parent: loom's types in place of std's.
#[cfg(target_arch = "x86_64")]
mod pair_sync {
    /// Loom's atomics, but for `AtomicPtr`'s store: see [`atomic::AtomicPtr`].
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        /// Loom's `AtomicPtr` with `store` done as a `swap` whose read is relaxed. Loom 0.7
        /// lets a store that races a read-modify-write slip between the RMW's read and its
        /// write (tokio-rs/loom#254): the caller's post of a job and the partner's claim of
        /// the job before it then both "happen", and the post is lost, an execution the memory
        /// model forbids. A swap that discards what it read has the store's effect and
        /// ordering (its read acquires nothing) but is placed after the latest write, which is
        /// what an interleaving of the two threads gives. (Loom models a `SeqCst` store as a
        /// release store anyway.)
        pub(crate) struct AtomicPtr<T>(loom::sync::atomic::AtomicPtr<T>);

        impl<T> AtomicPtr<T> {
            pub(crate) fn new(p: *mut T) -> AtomicPtr<T> {
                AtomicPtr(loom::sync::atomic::AtomicPtr::new(p))
            }
            pub(crate) fn load(&self, order: Ordering) -> *mut T {
                self.0.load(order)
            }
            pub(crate) fn swap(&self, p: *mut T, order: Ordering) -> *mut T {
                self.0.swap(p, order)
            }
            pub(crate) fn store(&self, p: *mut T, order: Ordering) {
                let order = match order {
                    Ordering::SeqCst => Ordering::Release,
                    other => other,
                };
                self.0.swap(p, order);
            }
        }
    }
    pub(crate) use loom::hint;
    pub(crate) use loom::sync::Arc;
    pub(crate) use mutex::{Mutex, MutexGuard};

    /// A mutex on loom's atomics that poisons as std's does: `pair.rs` relies on that (a
    /// caller's closure that panics leaves `busy` poisoned, and the next join goes on), and
    /// loom's `Mutex`, built on a std mutex inside, panics on its own poison instead.
    mod mutex {
        use loom::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

        pub(crate) struct Mutex<T> {
            locked: AtomicBool,
            poisoned: AtomicBool,
            data: std::cell::UnsafeCell<T>,
        }

        // SAFETY: `data` is reached only through a guard, which holds `locked`.
        unsafe impl<T: Send> Sync for Mutex<T> {}

        pub(crate) struct MutexGuard<'a, T>(&'a Mutex<T>);

        impl<T> Mutex<T> {
            pub(crate) fn new(data: T) -> Mutex<T> {
                Mutex { locked: AtomicBool::new(false), poisoned: AtomicBool::new(false), data: std::cell::UnsafeCell::new(data) }
            }

            pub(crate) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
                if self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                    return Err(TryLockError::WouldBlock);
                }
                let guard = MutexGuard(self);
                if self.poisoned.load(Ordering::Relaxed) {
                    return Err(TryLockError::Poisoned(PoisonError::new(guard)));
                }
                Ok(guard)
            }

            pub(crate) fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
                loop {
                    match self.try_lock() {
                        Ok(guard) => return Ok(guard),
                        Err(TryLockError::Poisoned(p)) => return Err(p),
                        Err(TryLockError::WouldBlock) => loom::thread::yield_now(),
                    }
                }
            }
        }

        impl<T> std::ops::Deref for MutexGuard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                // SAFETY: this guard holds the lock.
                unsafe { &*self.0.data.get() }
            }
        }

        impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
            fn deref_mut(&mut self) -> &mut T {
                // SAFETY: this guard holds the lock.
                unsafe { &mut *self.0.data.get() }
            }
        }

        impl<T> Drop for MutexGuard<'_, T> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.poisoned.store(true, Ordering::Relaxed);
                }
                self.0.locked.store(false, Ordering::Release);
            }
        }
    }

    /// Idle polls before the partner parks: enough to spin once, small enough to keep the
    /// state space small.
    pub(crate) const SPIN: u32 = 2;

    /// Loom's threads, with what loom does not model (the core count) fixed, and `park`
    /// recorded so that a model can tell whether the partner slept.
    pub(crate) mod thread {
        pub(crate) use loom::thread::{yield_now, Builder, JoinHandle};
        use std::sync::atomic::{AtomicBool, Ordering};

        /// Whether a thread parked in this execution (reset by [`crate::check`]).
        pub(crate) static PARKED: AtomicBool = AtomicBool::new(false);

        pub(crate) fn available_parallelism() -> std::io::Result<std::num::NonZeroUsize> {
            Ok(std::num::NonZeroUsize::new(2).expect("2 > 0"))
        }

        pub(crate) fn park() {
            PARKED.store(true, Ordering::Relaxed);
            loom::thread::park();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "../src/cpu/pair.rs"]
// The chooser and its timing are not modelled: only `Pair::new`, `join` and `drop` are used.
#[allow(dead_code)]
mod pair;

#[cfg(target_arch = "x86_64")]
mod models {
    use crate::pair::Pair;
    use crate::pair_sync::thread::PARKED;
    use loom::cell::UnsafeCell;
    use loom::thread::{self, ThreadId};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A value the caller's and the partner's closures both touch, through loom's
    /// `UnsafeCell`, which fails the model where two accesses (one a write) are not ordered by
    /// happens-before. `Sync` so that the partner's closure (which must be `Send`) can hold a
    /// reference; loom checks that the accesses are in fact ordered.
    struct Tracked<T>(UnsafeCell<T>);

    // SAFETY: every access goes through loom's checked `with`/`with_mut`, which fails the model
    // on a data race instead of letting one happen.
    unsafe impl<T: Send> Sync for Tracked<T> {}

    impl<T: Copy> Tracked<T> {
        fn new(value: T) -> Tracked<T> {
            Tracked(UnsafeCell::new(value))
        }
        fn get(&self) -> T {
            // SAFETY: see `Sync` above.
            self.0.with(|p| unsafe { *p })
        }
        fn set(&self, value: T) {
            // SAFETY: see `Sync` above.
            self.0.with_mut(|p| unsafe { *p = value });
        }
    }

    /// Counts over all executions of one model (std atomics, which loom does not see): which
    /// ways of finishing a join the model reached.
    pub(crate) struct Reached {
        /// Jobs run on the partner thread.
        on_partner: AtomicUsize,
        /// Jobs taken back by the caller.
        taken_back: AtomicUsize,
        /// Jobs run on the partner after it had parked in that execution.
        after_park: AtomicUsize,
    }

    pub(crate) static REACHED: Reached =
        Reached { on_partner: AtomicUsize::new(0), taken_back: AtomicUsize::new(0), after_park: AtomicUsize::new(0) };

    impl Reached {
        pub(crate) fn reset(&self) {
            for count in [&self.on_partner, &self.taken_back, &self.after_park] {
                count.store(0, Relaxed);
            }
        }

        /// Records where a job ran, from the job (`caller` is the caller's thread).
        fn ran(&self, caller: ThreadId) {
            if thread::current().id() == caller {
                self.taken_back.fetch_add(1, Relaxed);
            } else {
                self.on_partner.fetch_add(1, Relaxed);
                if PARKED.load(Relaxed) {
                    self.after_park.fetch_add(1, Relaxed);
                }
            }
        }

        /// Asserts that the model reached both ways of finishing a job.
        fn both_ways(&self) {
            assert!(self.on_partner.load(Relaxed) > 0, "no execution ran the job on the partner");
            assert!(self.taken_back.load(Relaxed) > 0, "no execution took the job back");
        }
    }

    fn new_pair() -> Pair {
        Pair::new().expect("loom's partner thread")
    }

    /// One join: each closure runs exactly once and both results come back, whether the partner
    /// claims the job or the caller takes it back; what the caller wrote before the join is
    /// visible to the job, and what the job wrote is visible to the caller after it.
    pub(crate) fn join_runs_both_closures_once() {
        let pair = new_pair();
        let caller = thread::current().id();
        let runs = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let before = Tracked::new(0u32);
        let written = Tracked::new(0u32);
        before.set(7);
        let (a, b) = pair.join(
            || {
                runs[0].fetch_add(1, Relaxed);
                1u32
            },
            || {
                runs[1].fetch_add(1, Relaxed);
                REACHED.ran(caller);
                written.set(before.get() + 1);
                String::from("b")
            },
        );
        assert_eq!((a, b.as_str()), (1, "b"));
        assert_eq!([runs[0].load(Relaxed), runs[1].load(Relaxed)], [1, 1]);
        assert_eq!(written.get(), 8);
    }

    /// Two joins in a row: the second's job is not confused with the first's (a stale
    /// `finished`, a job run twice or lost), each job sees the one before it, in whichever
    /// thread each ran.
    pub(crate) fn consecutive_joins_run_each_job_once() {
        let pair = new_pair();
        let caller = thread::current().id();
        let runs = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let chain = Tracked::new(0u32);
        for (round, count) in runs.iter().enumerate() {
            let round = round as u32;
            let (a, b) = pair.join(
                || 10 * round,
                || {
                    count.fetch_add(1, Relaxed);
                    REACHED.ran(caller);
                    assert_eq!(chain.get(), round, "the job saw the previous one's write");
                    chain.set(round + 1);
                    10 * round + 1
                },
            );
            assert_eq!((a, b), (10 * round, 10 * round + 1));
        }
        assert_eq!([runs[0].load(Relaxed), runs[1].load(Relaxed)], [1, 1]);
        assert_eq!(chain.get(), 2);
    }

    /// The partner spins out and parks between two joins; the second join's post wakes it
    /// (the model must reach a job run on the partner after it parked), and where the wake-up
    /// comes too late the caller takes the job back instead of waiting.
    pub(crate) fn a_parked_partner_is_woken_by_the_next_join() {
        let pair = new_pair();
        let caller = thread::current().id();
        assert_eq!(pair.join(|| 1, || 2), (1, 2));
        // Give the partner its idle polls (each yield lets it run).
        for _ in 0..3 {
            thread::yield_now();
        }
        let done = Tracked::new(false);
        let (a, ()) = pair.join(
            || 3,
            || {
                REACHED.ran(caller);
                done.set(true);
            },
        );
        assert_eq!(a, 3);
        assert!(done.get());
    }

    /// A panic in the job reaches the caller with its payload, whichever thread ran it, and
    /// the pair still works after it.
    pub(crate) fn a_panic_in_the_job_reaches_the_caller() {
        let pair = new_pair();
        let caller = thread::current().id();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pair.join(
                || 1,
                || -> u32 {
                    REACHED.ran(caller);
                    std::panic::panic_any(crate::QUIET_PANIC)
                },
            )
        }));
        let payload = caught.expect_err("the job's panic");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&crate::QUIET_PANIC));
        assert_eq!(pair.join(|| 3, || 4), (3, 4));
    }

    /// A panic in the caller's own closure waits, while unwinding, for a job the partner
    /// claimed (which uses the caller's stack) or takes the job back unrun; the caller's panic
    /// is the one that propagates, and the pair still works after it.
    pub(crate) fn a_panicking_caller_settles_the_job_first() {
        let pair = new_pair();
        let caller = thread::current().id();
        let written = Tracked::new(0u32);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pair.join(
                || -> u32 { std::panic::panic_any(crate::QUIET_PANIC) },
                || {
                    assert_ne!(thread::current().id(), caller, "a job taken back by a panicking caller is dropped, not run");
                    written.set(1);
                },
            )
        }));
        assert_eq!(caught.expect_err("the caller's panic").downcast_ref::<&str>(), Some(&crate::QUIET_PANIC));
        // 1 where the partner ran the job, 0 where it was taken back; read after the join
        // returned, which must be ordered after the partner's write.
        let count = if written.get() == 1 { &REACHED.on_partner } else { &REACHED.taken_back };
        count.fetch_add(1, Relaxed);
        assert_eq!(pair.join(|| 3, || 4), (3, 4));
    }

    /// Dropping the pair stops the partner wherever it is (spinning, about to park, parked)
    /// and joins it: loom fails the model on a partner left blocked or still running.
    pub(crate) fn dropping_the_pair_stops_a_sleeping_partner() {
        let pair = new_pair();
        assert_eq!(pair.join(|| 1, || 2), (1, 2));
        for _ in 0..3 {
            thread::yield_now();
        }
        drop(pair);
        if PARKED.load(Relaxed) {
            REACHED.after_park.fetch_add(1, Relaxed);
        }
    }

    /// What each model must have reached over all its executions.
    pub(crate) fn reached_both_ways() {
        REACHED.both_ways();
    }

    pub(crate) fn reached_a_job_after_a_park() {
        REACHED.both_ways();
        assert!(REACHED.after_park.load(Relaxed) > 0, "no execution ran a job on a partner that had parked");
    }

    pub(crate) fn reached_a_park() {
        assert!(REACHED.after_park.load(Relaxed) > 0, "no execution dropped the pair with its partner parked");
    }
}

/// The payload of the models' own panics, which the panic hook keeps quiet.
const QUIET_PANIC: &str = "a model's deliberate panic";

/// A model: its name, its body (run in every execution), and what must hold over all of them.
#[cfg(target_arch = "x86_64")]
struct Model {
    name: &'static str,
    body: fn(),
    reached: fn(),
}

#[cfg(target_arch = "x86_64")]
const MODELS: [Model; 6] = {
    use models::*;
    [
        Model { name: "join_runs_both_closures_once", body: join_runs_both_closures_once, reached: reached_both_ways },
        Model { name: "consecutive_joins_run_each_job_once", body: consecutive_joins_run_each_job_once, reached: reached_both_ways },
        Model {
            name: "a_parked_partner_is_woken_by_the_next_join",
            body: a_parked_partner_is_woken_by_the_next_join,
            reached: reached_a_job_after_a_park,
        },
        Model { name: "a_panic_in_the_job_reaches_the_caller", body: a_panic_in_the_job_reaches_the_caller, reached: reached_both_ways },
        Model {
            name: "a_panicking_caller_settles_the_job_first",
            body: a_panicking_caller_settles_the_job_first,
            reached: reached_both_ways,
        },
        Model {
            name: "dropping_the_pair_stops_a_sleeping_partner",
            body: dropping_the_pair_stops_a_sleeping_partner,
            reached: reached_a_park,
        },
    ]
};

/// Preemptions per execution, unless `LOOM_MAX_PREEMPTIONS` says otherwise: a preemption at
/// each step of a hand-off, and the models finish in seconds in a debug build (6 takes three
/// times as long and finds nothing more).
#[cfg(target_arch = "x86_64")]
const PREEMPTIONS: usize = 5;

/// Executions of the model being checked.
#[cfg(target_arch = "x86_64")]
static EXECUTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs one model to completion (panics where loom finds a failing execution).
#[cfg(target_arch = "x86_64")]
fn check(model: &Model) {
    models::REACHED.reset();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(PREEMPTIONS));
    let body = model.body;
    builder.check(move || {
        EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pair_sync::thread::PARKED.store(false, std::sync::atomic::Ordering::Relaxed);
        body();
    });
    (model.reached)();
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Filters as libtest takes them (flags such as `--nocapture` are ignored).
    let filters: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<&Model> = MODELS.iter().filter(|m| filters.is_empty() || filters.iter().any(|f| m.name.contains(f))).collect();
    if args.iter().any(|a| a == "--list") {
        chosen.iter().for_each(|m| println!("{}: test", m.name));
        return;
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&QUIET_PANIC) {
            default_hook(info);
        }
    }));
    println!("\nrunning {} loom models", chosen.len());
    let mut failed = Vec::new();
    for model in &chosen {
        // Named before it runs: some of loom's failures (a deadlock) abort the process.
        print!("model {} ... ", model.name);
        std::io::Write::flush(&mut std::io::stdout()).expect("stdout");
        let start = std::time::Instant::now();
        EXECUTIONS.store(0, std::sync::atomic::Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(|| check(model));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        let executions = EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed);
        println!("{verdict} ({executions} executions, {:.1} s)", start.elapsed().as_secs_f64());
        if outcome.is_err() {
            failed.push(model.name);
        }
    }
    if !failed.is_empty() {
        eprintln!("failed loom models: {}", failed.join(", "));
        std::process::exit(1);
    }
    println!("all {} loom models passed", chosen.len());
}

/// The partner thread exists on x86-64 only.
#[cfg(not(target_arch = "x86_64"))]
fn main() {}
