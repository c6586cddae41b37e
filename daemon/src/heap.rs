//! How the daemon's heap is laid out: one glibc arena for every thread, and large blocks
//! always given back.
//!
//! A polled directory's snapshot is made on the thread that polls it: the loop takes the
//! baseline, then the device's scanner thread replaces it at every poll. glibc gives each
//! thread that allocates an arena of its own, and a freed chunk goes back to the arena it came
//! from, to be reused only by that arena's threads. So after the first round of polls every
//! baseline lay freed in the main arena, where nothing of the same size is allocated again,
//! while its replacement grew the scanner's: 100 000 entries in 1 001 directories with the
//! IN_MODIFY mask grew the daemon by 125 B per entry while polled, against 80 B right after
//! the adds; 75 B with one arena. Each `statx` helper thread also took an arena of its own
//! for a few thread-local bytes. The threads that share the arena allocate a few times per
//! directory polled, never per entry, so its lock is not contended.
//!
//! glibc also raises its mmap threshold to the size of each large block freed, up to 32 MiB,
//! after which such blocks come from the heap and their pages stay resident once freed. A
//! poll of one 100 000-entry directory frees several megabytes of answers and the previous
//! snapshot: it kept the daemon 45 MB above its idle size for a 6 MB snapshot. A fixed
//! threshold (glibc's initial 128 KiB) keeps every large block mapped on its own and unmapped
//! when freed: 6 MB above idle.
//!
//! musl has a single heap, and its large blocks are always mapped on their own.

/// Sets up the allocator; call it before any thread starts.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables of glibc's allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
