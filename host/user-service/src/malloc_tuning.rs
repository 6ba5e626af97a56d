//! glibc malloc tuning for a process that caches many mid-sized response bodies (Pwned
//! Passwords ranges are ~36 KB): below glibc's mmap threshold such bodies live in the malloc
//! arenas, and as the byte-bounded cache evicts and refills them, the arenas keep the freed
//! space (fragmented, per thread arena) instead of giving it back. A fixed mmap threshold of
//! 32 KiB gives each such body a mapping of its own, returned to the system when the cache
//! drops it; fixing it also stops glibc from raising the threshold as blocks are freed. Two
//! arenas per process bound the per-thread arena growth. No-op off glibc, and when the
//! operator set `GLIBC_TUNABLES` (their tuning wins, unchanged).

/// Bodies at least this large get their own mapping.
const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024;
/// Malloc arenas (glibc's default is 8 × cores).
const ARENAS: i32 = 2;

/// Applies the tuning; call once, early (before the threads that allocate start).
pub fn tune() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; any value is accepted or refused (0).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
