//! How the daemon's heap is laid out: one glibc arena for every thread.
//!
//! A polled directory's snapshot is made on the thread that polls it: the loop takes the
//! baseline, then the device's scanner thread replaces it at every poll. glibc gives each
//! thread that allocates an arena of its own, and a freed chunk goes back to the arena it came
//! from, to be reused only by that arena's threads. So after the first round of polls every
//! baseline lay freed in the main arena, where nothing of the same size is allocated again,
//! while its replacement grew the scanner's: a 100 000-entry tree with the IN_MODIFY mask held
//! 5 MB of both (125 B per entry while polled, against 80 B right after the adds). Each `statx`
//! helper thread also took an arena of its own for a few thread-local bytes. With one arena,
//! what a poll frees is what the next poll allocates. The threads that share it allocate a few
//! times per directory polled, never per entry, so the lock is not contended. musl has a
//! single heap already.

/// Makes every thread allocate from glibc's main arena; call it before any thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
