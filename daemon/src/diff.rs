//! The events between two listings of one directory, in an order that replays correctly.
//!
//! Pure logic: two snapshots in, inotify-style changes out. Names gone and names appeared are
//! paired by inode into renames; the rest are deletes and creates. Attribute comparisons give
//! IN_MODIFY, IN_ATTRIB and, one poll after the last write, IN_CLOSE_WRITE.

use std::collections::HashMap;

use fakenotify_proto::inotify::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_ISDIR, IN_MODIFY, IN_MOVED_FROM,
    IN_MOVED_TO,
};

use crate::snapshot::{Entry, EntryStat, Snapshot};

/// One event for a name in the directory. `pair` is non-zero for the two halves of a rename;
/// the caller turns it into a cookie. `ino` is the entry's inode for creates and deletes, so
/// the caller can pair a delete in one directory with a create in another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub mask: u32,
    pub pair: u32,
    pub name: Vec<u8>,
    pub ino: u64,
    /// For a create: its inode looks moved in ([`EntryStat::looks_moved_in`]), so a create that
    /// pairs with no delete is a rename into the watched set, a lone IN_MOVED_TO.
    pub looks_moved: bool,
}

/// The attributes of the entry at an index of a listing, `None` where they cannot be had. The
/// diff asks only of new names; a listing without attributes answers with a `statx`.
pub type StatOf<'a> = dyn FnMut(&Snapshot, usize) -> Option<EntryStat> + 'a;

/// What a listing with attributes holds of its entry `index` ([`StatOf`]).
pub fn listed_stat(snapshot: &Snapshot, index: usize) -> Option<EntryStat> {
    snapshot.stat(index).copied()
}

/// Compares `old` with `new` and records in `new` which files are still being written.
///
/// Order: deletes, then renames (a rename out of a name before any rename into it), then
/// creates, then attribute events. Replaying them onto `old`'s names yields `new`'s names. A
/// name that a rename overwrote has no IN_DELETE, as with the kernel. `stat_of` tells a new
/// name moved in from a create.
pub fn diff(old: &Snapshot, new: &mut Snapshot, stat_of: &mut StatOf<'_>) -> Vec<Change> {
    let compare_stats = old.has_stats() && new.has_stats();
    let mut gone: Vec<usize> = Vec::new();
    let mut appeared: Vec<usize> = Vec::new();
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let (olds, news) = (old.entries(), new.entries());
    let (mut i, mut j) = (0, 0);
    while i < olds.len() || j < news.len() {
        let order = match (olds.get(i), news.get(j)) {
            (Some(o), Some(n)) => old.name(o).cmp(new.name(n)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                gone.push(i);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                appeared.push(j);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if olds[i].ino == news[j].ino && olds[i].is_dir == news[j].is_dir {
                    kept.push((i, j));
                } else {
                    gone.push(i);
                    appeared.push(j);
                }
                i += 1;
                j += 1;
            }
        }
    }

    let mut changes = Vec::new();
    let renames = order_renames(old, new, &pair_renames(old, new, &gone, &appeared), stat_of);
    let renamed_from: Vec<usize> = renames.iter().map(|r| r.0).collect();
    let renamed_to: Vec<usize> = renames.iter().map(|r| r.1).collect();
    let isdir = |e: &Entry| if e.is_dir { IN_ISDIR } else { 0 };

    for &g in gone.iter().filter(|g| !renamed_from.contains(g)) {
        changes.push(Change {
            mask: IN_DELETE | isdir(&olds[g]),
            name: old.name(&olds[g]).to_vec(),
            ino: olds[g].ino,
            ..Change::default()
        });
    }
    for (pair, &(from, to)) in renames.iter().enumerate() {
        let mask = isdir(&olds[from]);
        let pair = pair as u32 + 1;
        let ino = olds[from].ino;
        changes.push(Change {
            mask: IN_MOVED_FROM | mask,
            pair,
            name: old.name(&olds[from]).to_vec(),
            ino,
            ..Change::default()
        });
        changes.push(Change {
            mask: IN_MOVED_TO | mask,
            pair,
            name: new.name(&news[to]).to_vec(),
            ino,
            ..Change::default()
        });
    }
    let mut unsettled = Vec::new();
    for &a in appeared.iter().filter(|a| !renamed_to.contains(a)) {
        let entry = &news[a];
        let looks_moved = stat_of(new, a).is_some_and(|st| st.looks_moved_in());
        changes.push(Change {
            mask: IN_CREATE | isdir(entry),
            pair: 0,
            name: new.name(entry).to_vec(),
            ino: entry.ino,
            looks_moved,
        });
        // A new file that holds data was written after its create: the kernel reports
        // IN_MODIFY, which a watch for IN_MODIFY alone (or one that .NET widens later with
        // IN_MASK_ADD) waits for. Known only where attributes are listed, which is where
        // some watch asks for IN_MODIFY.
        let written = new.stat(a).is_some_and(|st| st.size > 0 && !st.linked());
        if !entry.is_dir && !looks_moved && written {
            let name = new.name(entry).to_vec();
            changes.push(Change { mask: IN_MODIFY, name, ino: entry.ino, ..Change::default() });
        }
        // A file moved in was written elsewhere: the kernel gives it no IN_CLOSE_WRITE here.
        if !entry.is_dir && !looks_moved {
            unsettled.push((a, true));
        }
    }
    for &(from, to) in &renames {
        unsettled.push((to, olds[from].unsettled));
    }
    for &(o, n) in &kept {
        let (entry, name) = (&olds[o], new.name(&news[n]));
        let stats = if compare_stats { old.stat(o).zip(new.stat(n)) } else { None };
        let (mask, still_unsettled) = match stats {
            Some((before, after)) => {
                attribute_change(before, after, entry.is_dir, entry.unsettled, false)
            }
            None => (0, entry.unsettled),
        };
        for kind in one_kind_each(mask) {
            let mask = kind | isdir(entry);
            changes.push(Change { mask, name: name.to_vec(), ino: entry.ino, ..Change::default() });
        }
        unsettled.push((n, still_unsettled));
    }
    for (index, flag) in unsettled {
        new.set_unsettled(index, flag);
    }
    drop_overwritten_deletes(&mut changes);
    changes
}

/// Drops the IN_DELETE of a name that a rename overwrote, as the kernel reports none: a rename
/// within the directory (IN_MOVED_TO) or into it (a create that looks moved).
fn drop_overwritten_deletes(changes: &mut Vec<Change>) {
    let onto: Vec<(Vec<u8>, u32)> = changes
        .iter()
        .filter(|c| c.mask & IN_MOVED_TO != 0 || (c.mask & IN_CREATE != 0 && c.looks_moved))
        .map(|c| (c.name.clone(), c.mask & IN_ISDIR))
        .collect();
    if !onto.is_empty() {
        changes.retain(|c| {
            c.mask & IN_DELETE == 0
                || !onto.iter().any(|(n, d)| *n == c.name && *d == c.mask & IN_ISDIR)
        });
    }
}

/// The events for an entry kept under the same name, and whether a write is still in progress.
///
/// `own` says whether the stat is of a watched object itself rather than of an entry in a
/// watched directory: a change of link count or ctime alone (a hard link made or removed) is
/// IN_ATTRIB for a watch on the inode, but the kernel tells the parent's watch nothing.
pub fn attribute_change(
    before: &EntryStat,
    after: &EntryStat,
    is_dir: bool,
    unsettled: bool,
    own: bool,
) -> (u32, bool) {
    let owner_or_mode = before.owner != after.owner;
    if is_dir {
        // A directory's times and size change with its contents; the kernel reports neither.
        return (if owner_or_mode { IN_ATTRIB } else { 0 }, false);
    }
    if before.size == after.size && before.mtime_ns != after.mtime_ns && after.times_set() {
        // Only the times moved, to a value no write gives: utimensat, which the kernel reports
        // as IN_ATTRIB. (`touch` to the current time looks like a write and stays IN_MODIFY.)
        return (IN_ATTRIB | if unsettled { IN_CLOSE_WRITE } else { 0 }, false);
    }
    if before.mtime_ns != after.mtime_ns || before.size != after.size {
        // A write and a chmod or chown between two polls: the kernel reports both.
        return (IN_MODIFY | if owner_or_mode { IN_ATTRIB } else { 0 }, true);
    }
    let mut mask = 0;
    if owner_or_mode || (own && before.change != after.change) {
        mask |= IN_ATTRIB;
    }
    if unsettled {
        mask |= IN_CLOSE_WRITE;
    }
    (mask, false)
}

/// The event kinds set in `mask`, one per event as the kernel reports them, in the order they
/// happened: the write, its close, then an attribute change seen in the same poll.
pub fn one_kind_each(mask: u32) -> impl Iterator<Item = u32> {
    [IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB].into_iter().filter(move |kind| mask & kind != 0)
}

/// `(gone index, appeared index)` pairs that share an inode and kind.
fn pair_renames(
    old: &Snapshot,
    new: &Snapshot,
    gone: &[usize],
    appeared: &[usize],
) -> Vec<(usize, usize)> {
    if gone.is_empty() || appeared.is_empty() {
        return Vec::new();
    }
    let mut by_ino: HashMap<(u64, bool), usize> =
        gone.iter().map(|&g| ((old.entries()[g].ino, old.entries()[g].is_dir), g)).collect();
    appeared
        .iter()
        .filter_map(|&a| {
            let e = &new.entries()[a];
            by_ino.remove(&(e.ino, e.is_dir)).map(|g| (g, a))
        })
        .collect()
}

/// Orders renames so that a name is moved away before another entry is moved onto it, and
/// keeps only renames that replay through names.
///
/// A cycle (b's inode now under a, a's under b) cannot: the second rename would take away
/// what the first put in place. A poll sees one where an inode freed by a rename over its
/// name is at once reused by a create (ext4 hands out the lowest free inode), and
/// where two names were swapped (`RENAME_EXCHANGE`, or three renames through a third name).
/// One rename of each cycle is dropped, so that its two names become a create, and a name
/// overwritten by the rename before it: the replay ends with the right names either way.
/// The one dropped is a name that does not look renamed (the create), if the cycle has one.
fn order_renames(
    old: &Snapshot,
    new: &Snapshot,
    renames: &[(usize, usize)],
    stat_of: &mut StatOf<'_>,
) -> Vec<(usize, usize)> {
    let mut pending: Vec<(usize, usize)> = renames.to_vec();
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let blocked = |&(_, to): &(usize, usize), pending: &[(usize, usize)]| {
            let target = new.name(&new.entries()[to]);
            pending.iter().any(|&(from, _)| old.name(&old.entries()[from]) == target)
        };
        match pending.iter().position(|r| !blocked(r, &pending)) {
            Some(next) => ordered.push(pending.remove(next)),
            // Every rename left waits for another: they form cycles. Break one.
            None => {
                let fresh = pending
                    .iter()
                    .position(|&(_, to)| !stat_of(new, to).is_some_and(|st| st.looks_renamed()));
                pending.remove(fresh.unwrap_or(0));
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{SnapshotBuilder, MOVED_IN_AFTER_NS};

    struct E(&'static str, u64, bool, Option<(i64, u64, u32)>);

    fn snap(entries: &[E]) -> Snapshot {
        let mut b = SnapshotBuilder::default();
        for E(name, ino, dir, stat) in entries {
            let stat = stat.map(|(mtime_ns, size, mode)| {
                EntryStat::new(mtime_ns, mtime_ns, size, mode, 1, 0, 0)
            });
            b.push(name.as_bytes(), *ino, *dir, stat);
        }
        b.finish()
    }

    fn events(changes: &[Change]) -> Vec<(u32, u32, String)> {
        changes
            .iter()
            .map(|c| (c.mask, c.pair, String::from_utf8_lossy(&c.name).into_owned()))
            .collect()
    }

    fn ev(mask: u32, pair: u32, name: &str) -> (u32, u32, String) {
        (mask, pair, name.to_string())
    }

    #[test]
    fn create_and_delete_with_isdir() {
        let old = snap(&[E("a", 1, false, None), E("d", 2, true, None)]);
        let mut new = snap(&[E("b", 3, false, None), E("e", 4, true, None)]);
        let got = events(&diff(&old, &mut new, &mut listed_stat));
        assert_eq!(
            got,
            [
                ev(IN_DELETE, 0, "a"),
                ev(IN_DELETE | IN_ISDIR, 0, "d"),
                ev(IN_CREATE, 0, "b"),
                ev(IN_CREATE | IN_ISDIR, 0, "e")
            ]
        );
    }

    #[test]
    fn rename_is_paired_by_inode() {
        let old = snap(&[E("old", 7, false, None)]);
        let mut new = snap(&[E("new", 7, false, None)]);
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [ev(IN_MOVED_FROM, 1, "old"), ev(IN_MOVED_TO, 1, "new")]
        );
    }

    #[test]
    fn rename_then_create_under_the_old_name() {
        let old = snap(&[E("a", 1, false, None)]);
        let mut new = snap(&[E("a", 2, false, None), E("b", 1, false, None)]);
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [ev(IN_MOVED_FROM, 1, "a"), ev(IN_MOVED_TO, 1, "b"), ev(IN_CREATE, 0, "a")]
        );
    }

    #[test]
    fn rename_over_an_existing_name_has_no_delete() {
        let old = snap(&[E("a", 1, false, None), E("b", 2, false, None)]);
        let mut new = snap(&[E("b", 1, false, None)]);
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [ev(IN_MOVED_FROM, 1, "a"), ev(IN_MOVED_TO, 1, "b")]
        );
    }

    #[test]
    fn a_name_overwritten_by_a_move_in_has_no_delete() {
        let change = |mask, name: &str, looks_moved| Change {
            mask,
            name: name.as_bytes().to_vec(),
            ino: 1,
            pair: 0,
            looks_moved,
        };
        let mut changes = vec![
            change(IN_DELETE, "episode.mkv", false),
            change(IN_DELETE, "other", false),
            change(IN_DELETE | IN_ISDIR, "season", false),
            change(IN_CREATE, "episode.mkv", true),
            change(IN_CREATE, "season", true),
            change(IN_CREATE, "other", false),
        ];
        drop_overwritten_deletes(&mut changes);
        assert_eq!(
            events(&changes),
            [
                ev(IN_DELETE, 0, "other"),
                ev(IN_DELETE | IN_ISDIR, 0, "season"),
                ev(IN_CREATE, 0, "episode.mkv"),
                ev(IN_CREATE, 0, "season"),
                ev(IN_CREATE, 0, "other"),
            ]
        );
    }

    #[test]
    fn chained_renames_move_the_target_away_first() {
        // b → c, then a → b: replaying a → b first would lose b.
        let old = snap(&[E("a", 1, false, None), E("b", 2, false, None)]);
        let mut new = snap(&[E("b", 1, false, None), E("c", 2, false, None)]);
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [
                ev(IN_MOVED_FROM, 1, "b"),
                ev(IN_MOVED_TO, 1, "c"),
                ev(IN_MOVED_FROM, 2, "a"),
                ev(IN_MOVED_TO, 2, "b")
            ]
        );
    }

    #[test]
    fn an_inode_reused_by_a_create_after_a_rename_over_its_name_is_no_swap() {
        // mv f1 f0 freed f0's inode 1; a new f1 took it. Read as two renames, f1 → f0 and
        // f0 → f1, the replay would take f0 away again.
        let stat = |mtime, ctime| Some(EntryStat::new(mtime, ctime, 5, 0o100644, 1, 0, 0));
        let mut b = SnapshotBuilder::default();
        b.push(b"f0", 1, false, stat(100, 100));
        b.push(b"f1", 2, false, stat(200, 200));
        let old = b.finish();
        let mut b = SnapshotBuilder::default();
        b.push(b"f0", 2, false, stat(200, 300));
        b.push(b"f1", 1, false, stat(400, 400));
        let mut new = b.finish();
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [
                ev(IN_MOVED_FROM, 1, "f1"),
                ev(IN_MOVED_TO, 1, "f0"),
                ev(IN_CREATE, 0, "f1"),
                ev(IN_MODIFY, 0, "f1")
            ]
        );
    }

    #[test]
    fn replaced_inode_is_delete_then_create() {
        let old = snap(&[E("f", 1, false, None)]);
        let mut new = snap(&[E("f", 2, false, None)]);
        assert_eq!(
            events(&diff(&old, &mut new, &mut listed_stat)),
            [ev(IN_DELETE, 0, "f"), ev(IN_CREATE, 0, "f")]
        );
    }

    #[test]
    fn modify_then_close_write_once_settled() {
        let first = snap(&[E("f", 1, false, Some((100, 10, 0o644)))]);
        let mut second = snap(&[E("f", 1, false, Some((200, 20, 0o644)))]);
        assert_eq!(events(&diff(&first, &mut second, &mut listed_stat)), [ev(IN_MODIFY, 0, "f")]);
        let mut third = snap(&[E("f", 1, false, Some((200, 20, 0o644)))]);
        assert_eq!(
            events(&diff(&second, &mut third, &mut listed_stat)),
            [ev(IN_CLOSE_WRITE, 0, "f")]
        );
        let mut fourth = snap(&[E("f", 1, false, Some((200, 20, 0o644)))]);
        assert!(
            diff(&third, &mut fourth, &mut listed_stat).is_empty(),
            "close-write is reported once"
        );
    }

    #[test]
    fn a_write_and_a_chmod_in_one_poll_are_both_reported() {
        let first = snap(&[E("f", 1, false, Some((100, 10, 0o644)))]);
        let mut second = snap(&[E("f", 1, false, Some((200, 20, 0o600)))]);
        assert_eq!(
            events(&diff(&first, &mut second, &mut listed_stat)),
            [ev(IN_MODIFY, 0, "f"), ev(IN_ATTRIB, 0, "f")]
        );
    }

    #[test]
    fn created_file_gets_close_write_when_settled() {
        let empty = snap(&[]);
        let mut created = snap(&[E("f", 1, false, Some((100, 0, 0o644)))]);
        assert_eq!(events(&diff(&empty, &mut created, &mut listed_stat)), [ev(IN_CREATE, 0, "f")]);
        let mut settled = snap(&[E("f", 1, false, Some((100, 0, 0o644)))]);
        assert_eq!(
            events(&diff(&created, &mut settled, &mut listed_stat)),
            [ev(IN_CLOSE_WRITE, 0, "f")]
        );
    }

    #[test]
    fn a_new_file_that_holds_data_was_written_after_its_create() {
        let empty = snap(&[]);
        let file = |size, nlink| Some(EntryStat::new(100, 100, size, 0o100644, nlink, 0, 0));
        let mut b = SnapshotBuilder::default();
        b.push(b"empty", 1, false, file(0, 1));
        b.push(b"full", 2, false, file(5, 1));
        b.push(b"link", 3, false, file(5, 2));
        b.push(b"dir", 4, true, Some(EntryStat::new(100, 100, 4096, 0o040755, 2, 0, 0)));
        let mut new = b.finish();
        assert_eq!(
            events(&diff(&empty, &mut new, &mut listed_stat)),
            [
                ev(IN_CREATE | IN_ISDIR, 0, "dir"),
                ev(IN_CREATE, 0, "empty"),
                ev(IN_CREATE, 0, "full"),
                ev(IN_MODIFY, 0, "full"),
                ev(IN_CREATE, 0, "link")
            ],
            "IN_MODIFY after the create of a file with data; none for a hard link"
        );
        let mut unlisted = snap(&[E("full", 2, false, None)]);
        assert_eq!(
            events(&diff(&empty, &mut unlisted, &mut listed_stat)),
            [ev(IN_CREATE, 0, "full")],
            "without attributes, nobody asked for IN_MODIFY"
        );
    }

    #[test]
    fn a_new_name_with_a_ctime_long_past_its_mtime_looks_moved_in_and_gets_no_close_write() {
        let empty = snap(&[]);
        let mut b = SnapshotBuilder::default();
        let (written, renamed) = (MOVED_IN_AFTER_NS, 3 * MOVED_IN_AFTER_NS);
        let setup = written + 3_000_000;
        b.push(b"moved", 1, false, Some(EntryStat::new(written, renamed, 5, 0o100644, 1, 0, 0)));
        b.push(b"owned", 2, false, Some(EntryStat::new(written, setup, 5, 0o100644, 1, 0, 0)));
        b.push(b"written", 3, false, Some(EntryStat::new(written, written, 5, 0o100644, 1, 0, 0)));
        let mut new = b.finish();
        let changes = diff(&empty, &mut new, &mut listed_stat);
        let looks: Vec<(String, bool)> = changes
            .iter()
            .filter(|c| c.mask & IN_CREATE != 0)
            .map(|c| (String::from_utf8_lossy(&c.name).into_owned(), c.looks_moved))
            .collect();
        assert_eq!(
            looks,
            [
                ("moved".to_string(), true),
                ("owned".to_string(), false),
                ("written".to_string(), false)
            ],
            "a chown just after the create (bindfs) is no rename"
        );
        assert_eq!(
            new.entries().iter().map(|e| e.unsettled).collect::<Vec<_>>(),
            [false, true, true],
            "only the files written here wait for IN_CLOSE_WRITE"
        );
    }

    #[test]
    fn chmod_is_attrib_and_directories_never_modify() {
        let old = snap(&[
            E("f", 1, false, Some((100, 10, 0o644))),
            E("d", 2, true, Some((100, 4096, 0o755))),
        ]);
        let mut new = snap(&[
            E("f", 1, false, Some((100, 10, 0o600))),
            E("d", 2, true, Some((300, 8192, 0o755))),
        ]);
        assert_eq!(events(&diff(&old, &mut new, &mut listed_stat)), [ev(IN_ATTRIB, 0, "f")]);
    }

    #[test]
    fn settle_and_chmod_in_one_poll_are_two_events() {
        let first = snap(&[E("f", 1, false, Some((100, 10, 0o644)))]);
        let mut second = snap(&[E("f", 1, false, Some((200, 20, 0o644)))]);
        assert_eq!(events(&diff(&first, &mut second, &mut listed_stat)), [ev(IN_MODIFY, 0, "f")]);
        let mut third = snap(&[E("f", 1, false, Some((200, 20, 0o600)))]);
        assert_eq!(
            events(&diff(&second, &mut third, &mut listed_stat)),
            [ev(IN_CLOSE_WRITE, 0, "f"), ev(IN_ATTRIB, 0, "f")]
        );
    }

    #[test]
    fn times_set_apart_from_a_write_are_attrib() {
        let stat = |mtime, ctime| EntryStat::new(mtime, ctime, 10, 0o644, 1, 0, 0);
        let written = stat(100, 100);
        // touch -d: mtime to a value of its own, ctime now.
        assert_eq!(
            attribute_change(&written, &stat(50, 200), false, false, false),
            (IN_ATTRIB, false)
        );
        // A write of the same size: both times now.
        assert_eq!(
            attribute_change(&written, &stat(200, 200), false, false, false),
            (IN_MODIFY, true)
        );
    }

    #[test]
    fn without_stats_only_names_are_compared() {
        let old = snap(&[E("f", 1, false, None)]);
        let mut new = snap(&[E("f", 1, false, None)]);
        assert!(diff(&old, &mut new, &mut listed_stat).is_empty());
    }

    #[test]
    fn replay_of_changes_yields_the_new_names() {
        // A small deterministic mix: every diff replayed onto the old names gives the new ones.
        let cases: [(&[E], &[E]); 5] = [
            (
                &[E("a", 1, false, None), E("b", 2, false, None), E("c", 3, true, None)],
                &[E("c", 1, false, None), E("d", 3, true, None)],
            ),
            (
                &[E("x", 1, false, None), E("y", 2, false, None)],
                &[E("y", 1, false, None), E("z", 2, false, None), E("x", 9, false, None)],
            ),
            (&[], &[E("n", 5, true, None)]),
            // A swap, and a cycle of three.
            (
                &[E("a", 1, false, None), E("b", 2, false, None)],
                &[E("a", 2, false, None), E("b", 1, false, None)],
            ),
            (
                &[E("a", 1, true, None), E("b", 2, true, None), E("c", 3, true, None)],
                &[E("a", 3, true, None), E("b", 1, true, None), E("c", 2, true, None)],
            ),
        ];
        for (before, after) in cases {
            let old = snap(before);
            let mut new = snap(after);
            let mut names: Vec<Vec<u8>> =
                old.entries().iter().map(|e| old.name(e).to_vec()).collect();
            for c in diff(&old, &mut new, &mut listed_stat) {
                if c.mask & (IN_DELETE | IN_MOVED_FROM) != 0 {
                    names.retain(|n| *n != c.name);
                } else if c.mask & (IN_CREATE | IN_MOVED_TO) != 0 {
                    names.retain(|n| *n != c.name);
                    names.push(c.name);
                }
            }
            names.sort();
            let want: Vec<Vec<u8>> = new.entries().iter().map(|e| new.name(e).to_vec()).collect();
            assert_eq!(names, want);
        }
    }
}
