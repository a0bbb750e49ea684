//! Giving freed memory back to the operating system after a burst of work.
//!
//! A sync round over a large tree allocates and frees many small objects;
//! glibc's allocator keeps the freed pages mapped (and counted in the
//! daemon's RSS) unless asked to release them. Other platforms' allocators
//! return memory on their own, so this is a no-op there.

/// Makes every thread allocate from one heap (glibc only; call first thing
/// in `main`). glibc gives threads their own heaps ("arenas"); memory freed
/// in one stays mapped there, so a daemon whose short-lived disk threads
/// touched several arenas kept twice its live memory. The daemon's threads
/// spend their time waiting on the disk and network, not in the allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn use_one_heap() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn use_one_heap() {}

/// Releases free heap pages to the OS (glibc only).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes
    // the arena locks itself and touches no memory the program owns.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
