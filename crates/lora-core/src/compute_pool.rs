//! Where a program's CPU work runs: on a thread of rayon's global pool, not beside it.
//!
//! Burn's CPU backend (and the `gemm` crate under it) splits each large operation across
//! rayon's global pool. Called from a thread outside the pool, such as a program's main thread,
//! every parallel operation is handed over to the pool while the caller blocks on a lock until
//! the pool is done: the caller's core does none of the work, and each operation costs a
//! wake-up of a worker and a wake-up of the caller. A training step or a batch-1 forward runs
//! hundreds of such operations, many of them a fraction of a millisecond long. Run on a worker
//! of the pool instead, the program's own thread takes a share of every operation and the other
//! workers steal the rest, as `rayon::join` intends.
//!
//! [`run_on_compute_pool`] does that for a whole program (the `lora` command calls it around
//! each command); library users who train or run models on the CPU can do the same.

/// The stack of each thread of the pool [`run_on_compute_pool`] sets up: the size of a Linux
/// main thread's default stack, since the program's own work moves onto these threads.
pub const WORKER_STACK_BYTES: usize = 8 << 20;

/// Runs `work` on a thread of rayon's global pool and returns its result; the calling thread
/// waits. Already on a pool thread, it runs `work` in place.
///
/// When the global pool has not been used yet, it is set up first with stacks of
/// [`WORKER_STACK_BYTES`] (rayon's default is 2 MiB) and as many threads as rayon would use
/// otherwise (`RAYON_NUM_THREADS`, else one per core). If the pool already exists, it is used as
/// it is.
///
/// Everything `work` runs that waits on other threads must not need the pool to make progress
/// (with one thread, the waiting thread is the pool); Burn's CPU operations and the `lora`
/// commands do not.
///
/// ```
/// let on_pool = lora_core::compute_pool::run_on_compute_pool(|| {
///     rayon::current_thread_index().is_some()
/// });
/// assert!(on_pool);
/// ```
pub fn run_on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    // Fails only when the pool exists already (or its threads cannot be spawned, in which case
    // rayon reports it again below); either way the existing pool runs the work.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK_BYTES)
        .build_global()
    {
        tracing::debug!("rayon's global pool was set up before: {e}");
    }
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_on_a_pool_thread_and_returns_its_value() {
        let caller = std::thread::current().id();
        let (value, thread, index) = run_on_compute_pool(|| {
            (
                41 + 1,
                std::thread::current().id(),
                rayon::current_thread_index(),
            )
        });
        assert_eq!(value, 42);
        assert_ne!(thread, caller, "the work ran on the calling thread");
        assert!(index.is_some(), "the work did not run on a pool thread");
    }

    #[test]
    fn nested_calls_run_in_place() {
        let (outer, inner) = run_on_compute_pool(|| {
            let outer = std::thread::current().id();
            (outer, run_on_compute_pool(|| std::thread::current().id()))
        });
        assert_eq!(outer, inner);
    }

    #[test]
    fn parallel_operations_inside_complete() {
        use rayon::prelude::*;
        let sum: u64 = run_on_compute_pool(|| (1..=10_000u64).into_par_iter().sum());
        assert_eq!(sum, 10_000 * 10_001 / 2);
    }
}
