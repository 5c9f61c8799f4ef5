//! How the process's allocator treats the large, short-lived tensors of a training step.
//!
//! A CPU backend allocates every intermediate tensor afresh: a MiniLM training step at batch 32
//! allocates and frees hundreds of buffers of 1-13 MB. glibc's `malloc` serves blocks above its
//! mmap threshold with `mmap` and returns them with `munmap`, and trims the top of the heap when
//! more than its trim threshold is free; either way the next step page-faults and zeroes the
//! same memory again (and `munmap` shoots down the TLB of every thread). Measured on a MiniLM
//! LoRA step (2 cores, `lora bench`): 980-1,160 ms with glibc's defaults, 710-800 ms with both
//! thresholds raised, at the same peak resident memory (freed blocks are reused, not kept
//! beside new ones). PyTorch's CPU allocator caches freed blocks for the same reason.

/// The largest block `malloc` serves from its heaps after [`keep_freed_memory`] (1 GiB); larger
/// ones are still mapped and unmapped on their own.
pub const HEAP_BLOCK_LIMIT: usize = 1 << 30;

/// Makes the process allocator keep freed memory for reuse instead of returning it to the
/// operating system after every tensor: on Linux with glibc it raises `malloc`'s mmap and trim
/// thresholds to [`HEAP_BLOCK_LIMIT`] (which also stops glibc from adjusting them itself).
/// Returns whether anything was changed: `false` on other platforms and allocators, where it
/// does nothing.
///
/// Call it once at the start of a program that trains or runs models on the CPU; the `lora`
/// command does. Resident memory then stays near the run's peak until the process exits,
/// instead of falling between steps; the peak itself does not grow. [`release_freed_memory`]
/// gives the kept memory back where a program measures one phase's peak after another.
///
/// ```
/// let changed = lora_core::host_memory::keep_freed_memory();
/// assert_eq!(changed, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

/// Returns the memory the allocator holds free to the operating system (glibc's
/// `malloc_trim(0)`, every arena). For a program that, having called [`keep_freed_memory`],
/// measures the peak memory of one phase after another (the training runs of an experiment):
/// called before a phase starts its peak window, it makes that phase's peak its own, not what an
/// earlier phase left cached. Costs the page faults of touching the released memory again.
/// Returns whether memory was released: `false` on other platforms and allocators, where it
/// does nothing.
pub fn release_freed_memory() -> bool {
    imp::release_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::HEAP_BLOCK_LIMIT;

    pub fn release_freed_memory() -> bool {
        // SAFETY: `malloc_trim` only returns free pages of the allocator's heaps to the kernel.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    pub fn keep_freed_memory() -> bool {
        let limit = libc::c_int::try_from(HEAP_BLOCK_LIMIT).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes allocator parameters; these two take any positive
        // size, and glibc applies them to every arena, including blocks already allocated.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, limit) };
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, limit) };
        let changed = mmap == 1 && trim == 1;
        if !changed {
            tracing::debug!("malloc refused the larger mmap / trim thresholds");
        }
        changed
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }

    pub fn release_freed_memory() -> bool {
        false
    }
}
