//! A partner thread for the fused kernels: [`Pair::join`] runs one closure on it and another on
//! the caller, like `rayon::join`, for work of a few microseconds. The partner spins between
//! jobs (a hand-off costs well under a microsecond) and parks after [`SPIN`] idle polls, so an
//! idle backend does not hold a core. As in rayon, a job the partner has not claimed by the
//! time the caller's own closure returns is taken back and run by the caller: a partner that
//! is asleep, or whose core the host has given to someone else, costs the split's gain, not a
//! wait. `rayon::join` itself, called from outside rayon's pool, parks the caller until the pool
//! finishes (which doubles the time of MNIST's stocBiO iteration), which is why this exists.
//!
//! Whether a split pays is measured, not assumed ([`Pair::choose`]): on a virtual
//! machine the two vCPUs can be two physical cores at one moment and the two hyperthreads of
//! one core the next (measured on a 2-vCPU AMD Zen 4 guest: a caller's half of MNIST's kernel
//! took 19.5 k cycles in some runs and 38 k in others, while one thread alone held steady).
//!
//! `core/tests/pair_loom.rs` model-checks this file with loom: it includes it with loom's
//! atomics, mutexes and threads in place of std's, and explores the interleavings of `join`,
//! the take-back, parking and shutdown.

use std::time::Instant;

// The synchronisation comes from the parent's `pair_sync`, std's in the crate, so that the loom
// model can include this very file with loom's in its place (and a small `SPIN`).
use super::pair_sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use super::pair_sync::{hint, thread, Arc, Mutex, MutexGuard, SPIN};

/// A job: the caller's closure slot (on the caller's stack), the function that runs it, and
/// its sequence number.
#[derive(Clone, Copy)]
struct Job {
    run: unsafe fn(*mut ()),
    slot: *mut (),
    seq: u64,
}

struct Shared {
    /// The posted job (on the caller's stack), null when there is none; whoever swaps it out
    /// runs it.
    job: AtomicPtr<Job>,
    /// The sequence number of the last job the partner finished.
    finished: AtomicU64,
    /// The partner parks only after setting this, and the caller unparks it when it is set.
    sleeping: AtomicBool,
    quit: AtomicBool,
    /// A job panicked on the partner: the caller re-raises it, with its payload.
    panicked: AtomicBool,
    payload: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            finished: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            payload: Mutex::new(None),
        }
    }
}

/// The caller's side of the partner thread.
pub(crate) struct Pair {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
    chooser: Mutex<Chooser>,
    /// One caller at a time (it holds the last sequence number): another one (a second thread
    /// sharing the backend) runs both closures itself.
    busy: Mutex<u64>,
}

impl Pair {
    /// The partner thread, or `None` on a one-core machine or where no thread can be spawned.
    pub(crate) fn new() -> Option<Pair> {
        if thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return None;
        }
        let shared = Arc::new(Shared::new());
        let theirs = Arc::clone(&shared);
        let thread = thread::Builder::new().name("bilevel-cpu-partner".into()).spawn(move || partner(&theirs)).ok()?;
        Some(Pair { shared, thread: Some(thread), chooser: Mutex::new(Chooser::new()), busy: Mutex::new(0) })
    }

    /// A pair whose partner never comes: every job is taken back (for testing that path).
    #[cfg(test)]
    fn absent_partner() -> Pair {
        let shared = Arc::new(Shared::new());
        Pair { shared, thread: None, chooser: Mutex::new(Chooser::new()), busy: Mutex::new(0) }
    }

    /// Whether a call should split its work with [`Pair::join`] or do it alone, as [`Chooser`]
    /// decides from the times of earlier calls; `kind` tells calls of one kind (the same size
    /// and shape, hence comparable times) from others. The call is timed until the answer is
    /// dropped. Either way the call must compute the same result: only its time may depend on
    /// the choice.
    pub(crate) fn choose(&self, kind: u64) -> Choice<'_> {
        let chooser = match self.chooser.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            // Another thread is timing a call on this pair: this one runs alone, untimed.
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let split = chooser.as_ref().is_some_and(|c| c.next());
        Choice { chooser, split, kind, start: Instant::now() }
    }

    /// `(a(), b())`, `b` on the partner thread while `a` runs here (or here after `a`, if the
    /// partner has not taken it by then).
    pub(crate) fn join<RA, RB: Send, A: FnOnce() -> RA, B: FnOnce() -> RB + Send>(&self, a: A, b: B) -> (RA, RB) {
        let mut seq = match self.busy.try_lock() {
            Ok(guard) => guard,
            // A caller's closure panicked earlier: the count is still right.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return (a(), b()),
        };
        *seq += 1;
        let mut slot = Slot { job: Some(b), result: None };
        let mut job = Job { run: run_slot::<B, RB>, slot: (&raw mut slot).cast(), seq: *seq };
        self.shared.job.store(&raw mut job, Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::SeqCst) {
            self.thread.as_ref().expect("partner thread").thread().unpark();
        }
        // The partner may use `slot` and `job` until it finishes: take the job back or wait for
        // it, even if `a` panics.
        let settle = Settle(&self.shared, *seq);
        let ra = a();
        let taken_back = settle.take_back_or_wait();
        std::mem::forget(settle);
        if taken_back {
            return (ra, slot.job.take().expect("the job was not run")());
        }
        if self.shared.panicked.swap(false, Ordering::SeqCst) {
            let payload = self.shared.payload.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            std::panic::resume_unwind(payload.unwrap_or_else(|| Box::new("a fused kernel panicked on the partner thread")));
        }
        (ra, slot.result.take().expect("the partner ran the job"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// [`Pair::choose`]'s answer, which times the call until dropped.
pub(crate) struct Choice<'a> {
    chooser: Option<MutexGuard<'a, Chooser>>,
    split: bool,
    kind: u64,
    start: Instant,
}

impl Choice<'_> {
    /// Whether to split the call.
    pub(crate) fn split(&self) -> bool {
        self.split
    }
}

impl Drop for Choice<'_> {
    fn drop(&mut self) {
        if let Some(chooser) = &mut self.chooser {
            chooser.record(self.split, self.start.elapsed().as_secs_f64(), self.kind);
        }
    }
}

/// Calls per period of [`Chooser`]: a probe, then the winner for the rest.
const PERIOD: u32 = 2048;
/// Probe calls not timed: the first split calls wake a partner that parked meanwhile.
const WARM: u32 = 16;
/// Probe calls timed, alone or split by [`probe_splits`].
const PROBE: u32 = 64;
/// Split only if it takes at most this fraction of the time alone: a second core spent for
/// less is not worth it.
const SPLIT_GAIN: f64 = 0.9;
/// Kinds of call a probe tells apart (MNIST's stocBiO has four: the gradient and Neumann steps,
/// the HVP and the outer gradient); calls of further kinds are not timed.
const KINDS: usize = 8;

/// Whether probe call `i` splits: about every other call, in a quasi-random order (the top bit
/// of a Fibonacci hash), so that a solver's repeating sequence of call kinds does not put every
/// call of one kind on the same side.
fn probe_splits(i: u32) -> bool {
    i.wrapping_mul(0x9E37_79B9) >> 31 == 1
}

/// Whether to split calls, from timing them: each [`PERIOD`] of calls begins with a probe that
/// runs calls alone and split, and the rest of the period does what cost less there, kind by
/// kind (the mean time of each kind's calls, weighted by how often it came). A period is tens
/// of milliseconds of MNIST's iterations, shorter than the spells in which a virtual machine's
/// cores keep one arrangement.
struct Chooser {
    /// Calls so far.
    calls: u32,
    /// This probe's calls by kind: seconds and count alone, seconds and count split.
    probe: Vec<(u64, [(f64, u32); 2])>,
    split: bool,
}

impl Chooser {
    fn new() -> Chooser {
        Chooser { calls: 0, probe: Vec::with_capacity(KINDS), split: true }
    }

    /// Whether the next call splits.
    fn next(&self) -> bool {
        let i = self.calls % PERIOD;
        if i < WARM + PROBE {
            probe_splits(i)
        } else {
            self.split
        }
    }

    /// Records the time of a call of `kind` that [`Chooser::next`] chose.
    fn record(&mut self, split: bool, seconds: f64, kind: u64) {
        let i = self.calls % PERIOD;
        if (WARM..WARM + PROBE).contains(&i) {
            let at = match self.probe.iter().position(|(k, _)| *k == kind) {
                Some(at) => Some(at),
                None if self.probe.len() < KINDS => {
                    self.probe.push((kind, [(0.0, 0); 2]));
                    Some(self.probe.len() - 1)
                }
                None => None,
            };
            if let Some(at) = at {
                let (s, n) = &mut self.probe[at].1[usize::from(split)];
                *s += seconds;
                *n += 1;
            }
        }
        if i + 1 == WARM + PROBE {
            // The probe's calls, each kind at its mean time alone and split (kinds seen only
            // one way do not count); no comparable kind keeps the last choice.
            let (mut alone, mut split) = (0.0, 0.0);
            for (_, [(sa, na), (ss, ns)]) in self.probe.drain(..) {
                if na > 0 && ns > 0 {
                    let n = f64::from(na + ns);
                    alone += n * sa / f64::from(na);
                    split += n * ss / f64::from(ns);
                }
            }
            if alone > 0.0 {
                self.split = split <= SPLIT_GAIN * alone;
            }
        }
        self.calls = self.calls.wrapping_add(1);
    }
}

struct Slot<B, RB> {
    job: Option<B>,
    result: Option<RB>,
}

/// Runs the closure in a [`Slot`] and stores its result there.
///
/// Safety: `slot` points to a live `Slot<B, RB>` that nothing else touches meanwhile.
unsafe fn run_slot<B: FnOnce() -> RB, RB>(slot: *mut ()) {
    // SAFETY: the caller's contract.
    let slot = unsafe { &mut *slot.cast::<Slot<B, RB>>() };
    let job = slot.job.take().expect("a job runs once");
    slot.result = Some(job());
}

/// Settles job `.1` (on drop too, when the caller's closure panics): takes it back if the
/// partner has not claimed it, else waits for the partner to finish it.
struct Settle<'a>(&'a Shared, u64);

impl Settle<'_> {
    /// Whether the job was taken back (the caller runs it).
    fn take_back_or_wait(&self) -> bool {
        if !self.0.job.swap(std::ptr::null_mut(), Ordering::SeqCst).is_null() {
            return true;
        }
        // A partner that lost its core mid-job (an oversubscribed machine) gets ours after a
        // while, rather than our spinning out the time slice.
        let mut polls = 0u32;
        while self.0.finished.load(Ordering::Acquire) < self.1 {
            polls = polls.saturating_add(1);
            if polls < SPIN {
                hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        false
    }
}

/// Only an unwinding caller drops a `Settle` (`join` forgets it otherwise): the caller's own
/// panic is the one that propagates, and a partner's panic from the same join is discarded.
impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.take_back_or_wait();
        if self.0.panicked.swap(false, Ordering::SeqCst) {
            self.0.payload.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
    }
}

/// The partner's loop: spin for a posted job, park when idle long enough, run each job it
/// claims.
fn partner(shared: &Shared) {
    loop {
        let mut idle = 0u32;
        let job = loop {
            if shared.quit.load(Ordering::SeqCst) {
                return;
            }
            // Claim a posted job (looking first, so that an idle poll writes nothing): from
            // here on the caller waits for it instead of running it.
            let posted = !shared.job.load(Ordering::Relaxed).is_null();
            let job = if posted { shared.job.swap(std::ptr::null_mut(), Ordering::SeqCst) } else { std::ptr::null_mut() };
            if !job.is_null() {
                // SAFETY: the caller keeps the job alive until `finished` reaches its number.
                break unsafe { *job };
            }
            idle += 1;
            if idle < SPIN {
                hint::spin_loop();
            } else {
                // Set the flag before the last look, so that a post after the look unparks us.
                shared.sleeping.store(true, Ordering::SeqCst);
                if shared.job.load(Ordering::SeqCst).is_null() && !shared.quit.load(Ordering::SeqCst) {
                    thread::park();
                }
                shared.sleeping.store(false, Ordering::SeqCst);
                idle = 0;
            }
        };
        // SAFETY: as above, for the slot too.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (job.run)(job.slot) }));
        if let Err(payload) = outcome {
            *shared.payload.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(payload);
            shared.panicked.store(true, Ordering::SeqCst);
        }
        shared.finished.store(job.seq, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partner, which every machine of this project's kind (2 cores) has.
    fn pair() -> Pair {
        Pair::new().expect("a partner thread (this test needs two cores)")
    }

    #[test]
    fn join_runs_both_and_returns_both_results() {
        let pair = pair();
        let mut left = vec![0u32; 1000];
        let mut right = vec![0u32; 1000];
        for round in 0..200u32 {
            let (a, b) = pair.join(
                || {
                    left.iter_mut().for_each(|x| *x += round);
                    left[0]
                },
                || {
                    right.iter_mut().for_each(|x| *x += 2 * round);
                    right[999]
                },
            );
            assert_eq!((a, b), (left[0], right[999]));
        }
        assert_eq!(left[500], (0..200).sum::<u32>());
        assert_eq!(right[500], 2 * (0..200).sum::<u32>());
        // With a slow own half the partner surely claims the job: it runs there.
        let caller = std::thread::current().id();
        let (_, ran_on) = pair.join(|| std::thread::sleep(std::time::Duration::from_millis(50)), || std::thread::current().id());
        assert_ne!(ran_on, caller, "the partner did not take the job in 50 ms");
        // After a long idle spell the partner has parked; a post must wake it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(pair.join(|| 1, || 2), (1, 2));
    }

    #[test]
    fn a_job_the_partner_does_not_take_is_run_by_the_caller() {
        let pair = Pair::absent_partner();
        let caller = std::thread::current().id();
        for round in 0..3 {
            let (a, (b, ran_on)) = pair.join(|| round, || (round * 2, std::thread::current().id()));
            assert_eq!((a, b, ran_on), (round, round * 2, caller));
        }
    }

    /// Runs a chooser through one period of calls of three kinds that repeat in turn (kind k
    /// takes k times `alone` or `split` seconds), and returns what it does after the probe.
    fn choice_after_probe(alone: f64, split: f64) -> bool {
        let mut chooser = Chooser::new();
        let mut probed = Vec::new();
        for call in 0..WARM + PROBE {
            let s = chooser.next();
            let kind = u64::from(1 + call % 3);
            probed.push((kind, s));
            chooser.record(s, kind as f64 * if s { split } else { alone }, kind);
        }
        // The probe runs every kind both ways, about half the calls each.
        for kind in 1..=3 {
            for way in [false, true] {
                assert!(probed.iter().filter(|&&p| p == (kind, way)).count() >= 8, "kind {kind}, split {way}");
            }
        }
        let after = chooser.next();
        // ... and the choice holds for the rest of the period, then the next probe begins.
        for _ in WARM + PROBE..PERIOD {
            assert_eq!(chooser.next(), after);
            chooser.record(after, 1.0, 1);
        }
        assert_eq!(chooser.calls % PERIOD, 0, "a new period starts with a probe");
        after
    }

    #[test]
    fn the_chooser_splits_only_where_splitting_pays() {
        assert!(choice_after_probe(1.0, 0.6));
        assert!(choice_after_probe(1.0, 0.85));
        assert!(!choice_after_probe(1.0, 0.95));
        assert!(!choice_after_probe(1.0, 1.5));
    }

    /// A call kind that is slow on the split side alone (its calls happen to land there) does
    /// not decide: the kinds are compared each with itself.
    #[test]
    fn the_chooser_compares_each_kind_with_itself() {
        let mut chooser = Chooser::new();
        for call in 0..WARM + PROBE {
            let s = chooser.next();
            // Split calls are all of the slow kind, alone calls of the fast one, and one
            // kind comes both ways at 0.5 s split against 1 s alone.
            let (kind, t) = match call % 4 {
                0 if s => (7, 100.0),
                0 => (8, 0.001),
                _ => (1, if s { 0.5 } else { 1.0 }),
            };
            chooser.record(s, t, kind);
        }
        assert!(chooser.next(), "split: the only kind seen both ways is faster split");
    }

    #[test]
    fn choose_times_each_call_and_answers_as_the_chooser_does() {
        let pair = pair();
        for i in 0..WARM + PROBE {
            let choice = pair.choose(1);
            assert_eq!(choice.split(), probe_splits(i));
            // While one call is timed, another thread's runs alone.
            assert!(!pair.choose(1).split());
        }
        assert_eq!(pair.chooser.lock().unwrap().calls, WARM + PROBE);
    }

    #[test]
    fn a_partner_panic_reaches_the_caller_and_the_pair_still_works() {
        let pair = pair();
        // The caller's half waits long enough for the partner to take the job and panic there.
        let slow = || std::thread::sleep(std::time::Duration::from_millis(50));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pair.join(slow, || -> u32 { panic!("boom") })));
        assert_eq!(caught.expect_err("the panic").downcast_ref::<&str>(), Some(&"boom"), "the payload is the partner's");
        assert_eq!(pair.join(|| 3, || 4), (3, 4));
    }
}
