//! The synchronisation the partner thread (`pair.rs`) is built on: std's. The loom model
//! (`core/tests/pair_loom.rs`) includes `pair.rs` next to its own `pair_sync` with loom's types
//! and a small [`SPIN`], so that it checks this crate's code, not a copy.

pub(super) use std::sync::atomic;
pub(super) use std::sync::{Arc, Mutex, MutexGuard};
pub(super) use std::{hint, thread};

/// Idle polls before the partner parks: 0.1–1 ms of spinning (a `pause` takes 10–140 cycles,
/// by CPU), several solver steps.
pub(super) const SPIN: u32 = 20_000;
