//! How the daemon's heap is laid out: one glibc arena for every thread, and large blocks
//! always given back.
//!
//! A polled directory's snapshot is made on the thread that polls it: the loop takes the
//! baseline, then the device's worker replaces it at every poll. glibc gives each
//! thread that allocates an arena of its own, and a freed chunk goes back to the arena it came
//! from, to be reused only by that arena's threads. So after the first round of polls every
//! baseline lay freed in the main arena, where nothing of the same size is allocated again,
//! while its replacement grew the worker's: 100 000 entries in 1 001 directories with the
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

use std::time::{Duration, Instant};

/// Sets up the allocator; call it before any thread starts.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables of glibc's allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// How often a worker gives the heap's free pages back.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Gives free heap pages back to the system now and then. A poll frees the listing it
/// replaces and its own buffers, and what the next poll allocates does not fit every hole:
/// 100 000 entries with the IN_MODIFY mask, polled every second, stayed about 3 B per entry
/// lower with a trim after every round (76 against 72-73 B per entry). `malloc_trim` walks
/// the free chunks of the one arena, a fraction of a millisecond for a heap of some MB.
pub struct Trimmer {
    last: Instant,
}

impl Trimmer {
    pub fn new(now: Instant) -> Trimmer {
        Trimmer { last: now }
    }

    /// Whether a trim is due at `now`; if so, the next is due [`TRIM_EVERY`] later.
    fn due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last) < TRIM_EVERY {
            return false;
        }
        self.last = now;
        true
    }

    /// Call after each poll.
    pub fn after_poll(&mut self) {
        if self.due(Instant::now()) {
            trim();
        }
    }
}

/// Returns the heap's free pages to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_once_per_period() {
        let start = Instant::now();
        let mut trimmer = Trimmer::new(start);
        assert!(!trimmer.due(start));
        assert!(!trimmer.due(start + TRIM_EVERY / 2));
        assert!(trimmer.due(start + TRIM_EVERY));
        assert!(!trimmer.due(start + TRIM_EVERY + TRIM_EVERY / 2));
        assert!(trimmer.due(start + 3 * TRIM_EVERY));
    }
}
