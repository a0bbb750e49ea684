//! Giving freed memory back to the operating system after a burst of work.
//!
//! A sync round over a large tree allocates and frees many small objects;
//! glibc's allocator keeps the freed pages mapped (and counted in the
//! daemon's RSS) unless asked to release them. Other platforms' allocators
//! return memory on their own, so this is a no-op there.

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
