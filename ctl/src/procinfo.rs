//! What `doctor` reads about a program without running it: an ELF file's linking (interpreter,
//! dynamic section and its NEEDED entries, Go's build-info section and build-ID note), and the
//! lines of `/proc/PID/maps` and `/proc/PID/environ`.
//!
//! Pure parsers over bytes, with every offset checked: the input is any file a process maps or
//! runs, so it is untrusted (fuzzed by `fuzz/fuzz_targets/doctor_inputs.rs`).

/// How an ELF file is linked, as far as `doctor` cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfLinking {
    /// `PT_INTERP`: the dynamic loader that honours `LD_PRELOAD`. None: statically linked (or a
    /// shared library).
    pub interpreter: Option<String>,
    /// Whether there is a `PT_DYNAMIC` segment.
    pub dynamic: bool,
    /// `DT_NEEDED` entries of the dynamic section (libraries loaded with it).
    pub needed: usize,
    /// A `.go.buildinfo` section or a `Go` build-ID note: a Go program, which makes its inotify
    /// system calls itself.
    pub go: bool,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const DT_NEEDED: u64 = 1;
const NT_GO_BUILD_ID: u32 = 4;
/// Sections, program headers and notes beyond these counts are not read.
const MAX_HEADERS: usize = 4096;

/// A view of an ELF file's bytes with its class and byte order.
struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    big: bool,
}

impl Elf<'_> {
    fn uint(&self, at: usize, len: usize) -> Option<u64> {
        let field = self.bytes.get(at..at.checked_add(len)?)?;
        let mut value = 0u64;
        for i in 0..len {
            let byte = if self.big { field[i] } else { field[len - 1 - i] };
            value = value << 8 | u64::from(byte);
        }
        Some(value)
    }

    fn u16(&self, at: usize) -> Option<usize> {
        self.uint(at, 2).map(|v| v as usize)
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.uint(at, 4).map(|v| v as u32)
    }

    /// A 32- or 64-bit word, by class.
    fn word(&self, at: usize) -> Option<u64> {
        self.uint(at, if self.wide { 8 } else { 4 })
    }

    fn range(&self, offset: u64, size: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        self.bytes.get(start..end)
    }
}

/// Reads the linking of the ELF file `bytes` (the whole file, or at least its headers and the
/// segments and sections they point at: what is cut off counts as absent).
pub fn elf_linking(bytes: &[u8]) -> Result<ElfLinking, &'static str> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file");
    }
    let wide = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class"),
    };
    let big = match bytes.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF byte order"),
    };
    let elf = Elf { bytes, wide, big };
    let (phoff, shoff, sizes) = if wide { (0x20, 0x28, 0x36) } else { (0x1c, 0x20, 0x2a) };
    let header = |at: usize| elf.u16(sizes + at).ok_or("truncated ELF header");
    let phoff = elf.word(phoff).ok_or("truncated ELF header")?;
    let shoff = elf.word(shoff).ok_or("truncated ELF header")?;
    let (phentsize, phnum) = (header(0)?, header(2)?.min(MAX_HEADERS));
    let (shentsize, shnum, shstrndx) = (header(4)?, header(6)?.min(MAX_HEADERS), header(8)?);

    let mut linking = ElfLinking::default();
    for i in 0..phnum {
        let Some(at) = entry(phoff, phentsize, i) else { break };
        let Some(kind) = elf.u32(at) else { break };
        // p_offset and p_filesz: after p_flags on 64-bit, in order on 32-bit.
        let (offset, filesz) = if wide {
            (elf.word(at + 8), elf.word(at + 32))
        } else {
            (elf.word(at + 4), elf.word(at + 16))
        };
        let segment = offset.zip(filesz).and_then(|(o, s)| elf.range(o, s));
        match (kind, segment) {
            (PT_INTERP, Some(text)) => {
                let text = text.split(|&b| b == 0).next().unwrap_or_default();
                linking.interpreter = Some(String::from_utf8_lossy(text).into_owned());
            }
            (PT_INTERP, None) => linking.interpreter = Some(String::new()),
            (PT_DYNAMIC, segment) => {
                linking.dynamic = true;
                linking.needed += segment.map_or(0, |s| needed_entries(&elf, s));
            }
            (PT_NOTE, Some(notes)) => linking.go |= has_go_note(&elf, notes),
            _ => {}
        }
    }
    linking.go |= has_go_section(&elf, shoff, shentsize, shnum, shstrndx);
    Ok(linking)
}

/// The offset of header `i` of a table at `offset`, if it fits in memory arithmetic.
fn entry(offset: u64, size: usize, i: usize) -> Option<usize> {
    usize::try_from(offset).ok()?.checked_add(size.checked_mul(i)?)
}

fn needed_entries(elf: &Elf<'_>, dynamic: &[u8]) -> usize {
    let word = if elf.wide { 8 } else { 4 };
    let view = Elf { bytes: dynamic, wide: elf.wide, big: elf.big };
    let mut needed = 0;
    for at in (0..dynamic.len() / (2 * word)).map(|i| i * 2 * word) {
        match view.word(at) {
            Some(0) | None => break,
            Some(DT_NEEDED) => needed += 1,
            Some(_) => {}
        }
    }
    needed
}

fn has_go_note(elf: &Elf<'_>, notes: &[u8]) -> bool {
    let view = Elf { bytes: notes, wide: elf.wide, big: elf.big };
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0usize;
    for _ in 0..MAX_HEADERS {
        let (Some(namesz), Some(descsz), Some(kind)) =
            (view.u32(at), view.u32(at + 4), view.u32(at + 8))
        else {
            return false;
        };
        let name_at = at + 12;
        let name = notes.get(name_at..name_at.saturating_add(namesz as usize));
        if kind == NT_GO_BUILD_ID && name == Some(b"Go\0") {
            return true;
        }
        let next = pad(namesz as usize)
            .and_then(|n| n.checked_add(pad(descsz as usize)?)?.checked_add(name_at));
        match next {
            Some(next) if next > at => at = next,
            _ => return false,
        }
    }
    false
}

fn has_go_section(elf: &Elf<'_>, shoff: u64, size: usize, count: usize, strndx: usize) -> bool {
    // sh_name, then sh_offset and sh_size (after sh_flags and sh_addr, words by class).
    let (offset_at, size_at) = if elf.wide { (24, 32) } else { (16, 20) };
    let section = |i: usize| {
        let at = entry(shoff, size, i)?;
        Some((elf.u32(at)?, elf.word(at + offset_at)?, elf.word(at + size_at)?))
    };
    let Some(names) = section(strndx).and_then(|(_, o, s)| elf.range(o, s)) else {
        return false;
    };
    (0..count).filter_map(section).any(|(name, _, _)| {
        names.get(name as usize..).is_some_and(|n| n.starts_with(b".go.buildinfo\0"))
    })
}

/// One mapping of `/proc/PID/maps` that has a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub inode: u64,
    /// As the kernel shows it: in the process's own mount namespace, `\n` escaped as `\012`.
    pub path: &'a [u8],
}

/// The file-backed mappings of a `/proc/PID/maps` text, each path once, in order.
pub fn mapped_files(maps: &[u8]) -> Vec<Mapping<'_>> {
    let mut files: Vec<Mapping<'_>> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // address perms offset dev inode path: the path starts after the fifth field's spaces.
        let mut rest = line;
        let mut inode: Option<u64> = None;
        for field in 0..5 {
            let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            rest = &rest[start..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            if field == 4 {
                inode = std::str::from_utf8(&rest[..end]).ok().and_then(|s| s.parse().ok());
            }
            rest = &rest[end..];
        }
        let path = rest.trim_ascii_start();
        if let Some(inode) = inode.filter(|&i| i != 0) {
            if path.starts_with(b"/") && !files.iter().any(|m| m.path == path) {
                files.push(Mapping { inode, path });
            }
        }
    }
    files
}

/// The value of `name` in a `/proc/PID/environ` text (NUL-separated `NAME=value`); the first
/// one, as `getenv` finds.
pub fn environ_value<'a>(environ: &'a [u8], name: &str) -> Option<&'a [u8]> {
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
}

/// The paths of an `LD_PRELOAD` value: separated by spaces or colons, as ld.so reads it.
pub fn preload_paths(value: &[u8]) -> Vec<&[u8]> {
    value.split(|&b| b == b' ' || b == b':').filter(|p| !p.is_empty()).collect()
}

/// The mount points of device `dev` (`st_dev`, as `status` reports a polled mount's) in a
/// `/proc/PID/mountinfo` text, as the process sees them (octal escapes such as `\040` kept).
pub fn mount_points(mountinfo: &[u8], dev: u64) -> Vec<&[u8]> {
    // glibc's gnu_dev_major and gnu_dev_minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major}:{minor}");
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            // id parent major:minor root mount-point options...
            let mut fields = line.split(|&b| b == b' ');
            let device = fields.nth(2)?;
            let point = fields.nth(1)?;
            (device == wanted.as_bytes()).then_some(point)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit little-endian ELF with the given program headers `(type, contents)` and, when
    /// `section` is given, a section header table with a string table and that section name.
    fn elf64(segments: &[(u32, &[u8])], section: Option<&str>) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let phoff = 64usize;
        let mut data_at = phoff + 56 * segments.len();
        let mut data = Vec::new();
        let mut headers = Vec::new();
        for (kind, contents) in segments {
            let mut h = [0u8; 56];
            h[..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&(data_at as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(contents.len() as u64).to_le_bytes());
            headers.extend_from_slice(&h);
            data.extend_from_slice(contents);
            data_at += contents.len();
        }
        out[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&data);
        if let Some(name) = section {
            let strtab = format!("\0{name}\0.shstrtab\0").into_bytes();
            let strtab_at = out.len() as u64;
            out.extend_from_slice(&strtab);
            let shoff = out.len() as u64;
            let mut table = vec![0u8; 64 * 3];
            // Section 1: the named one; section 2: the string table.
            table[64..68].copy_from_slice(&1u32.to_le_bytes());
            let second = 128;
            table[second..second + 4].copy_from_slice(&(name.len() as u32 + 2).to_le_bytes());
            table[second + 24..second + 32].copy_from_slice(&strtab_at.to_le_bytes());
            table[second + 32..second + 40].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
            out.extend_from_slice(&table);
            out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            out[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
            out[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        }
        out
    }

    fn dynamic(tags: &[u64]) -> Vec<u8> {
        tags.iter().flat_map(|t| [*t, 0]).flat_map(u64::to_le_bytes).collect()
    }

    #[test]
    fn a_dynamic_program_names_its_interpreter_and_libraries() {
        let dynamic = dynamic(&[1, 1, 12, 0, 1]);
        let elf = elf64(&[(3, b"/lib64/ld-linux-x86-64.so.2\0"), (2, &dynamic)], None);
        let linking = elf_linking(&elf).expect("valid");
        assert_eq!(linking.interpreter.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(linking.dynamic);
        assert_eq!(linking.needed, 2, "entries after DT_NULL are not read");
        assert!(!linking.go);
    }

    #[test]
    fn a_static_program_has_no_interpreter_and_go_is_recognised() {
        assert_eq!(elf_linking(&elf64(&[(1, b"")], None)), Ok(ElfLinking::default()));
        let note =
            [&3u32.to_le_bytes()[..], &4u32.to_le_bytes(), &4u32.to_le_bytes(), b"Go\0\0id!!"]
                .concat();
        assert!(elf_linking(&elf64(&[(4, &note)], None)).expect("valid").go);
        let other =
            [&4u32.to_le_bytes()[..], &4u32.to_le_bytes(), &3u32.to_le_bytes(), b"GNU\0abcd"]
                .concat();
        assert!(!elf_linking(&elf64(&[(4, &other)], None)).expect("valid").go);
        assert!(elf_linking(&elf64(&[], Some(".go.buildinfo"))).expect("valid").go);
        assert!(!elf_linking(&elf64(&[], Some(".go.buildinf"))).expect("valid").go);
    }

    #[test]
    fn cut_or_foreign_files_are_errors_or_absent_parts() {
        let elf = elf64(&[(3, b"/lib/ld-musl-x86_64.so.1\0"), (2, &dynamic(&[1, 0]))], None);
        for cut in 0..elf.len() {
            let _ = elf_linking(&elf[..cut]);
        }
        assert_eq!(elf_linking(b"#!/bin/sh\n"), Err("not an ELF file"));
        assert_eq!(elf_linking(b"\x7fELF\x03\x01"), Err("unknown ELF class"));
    }

    #[test]
    fn maps_lines_give_each_file_once() {
        let maps = b"55d0-55d1 r--p 00000000 08:01 1234 /usr/bin/cat\n\
55d1-55d2 r-xp 00001000 08:01 1234 /usr/bin/cat\n\
7f00-7f01 r-xp 00000000 00:2a 99   /run/fakenotify/libfakenotify.so (deleted)\n\
7ff0-7ff1 rw-p 00000000 00:00 0    [stack]\n\
7ff2-7ff3 rw-p 00000000 00:00 0\n";
        let files = mapped_files(maps);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], Mapping { inode: 1234, path: b"/usr/bin/cat" });
        assert_eq!(files[1].path, b"/run/fakenotify/libfakenotify.so (deleted)");
        assert!(mapped_files(b"garbage\n\n   \nx y z w 5 /a").len() == 1);
    }

    #[test]
    fn mount_points_of_a_device() {
        let mountinfo = b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
40 22 0:53 / /mnt/nas rw - fuse.rclone nas: rw\n\
41 22 0:53 /tv /media/tv\\040shows rw - fuse.rclone nas: rw\n\
42 22 259:65536 / /big rw - xfs /dev/x rw\n";
        let points = mount_points(mountinfo, 0x35);
        assert_eq!(points, [&b"/mnt/nas"[..], b"/media/tv\\040shows"]);
        assert_eq!(mount_points(mountinfo, 0x801), [&b"/"[..]]);
        // Major 259, minor 65536: the minor's high bits sit above the major's low ones.
        assert!(mount_points(mountinfo, (259 << 8) | (1 << 32)).is_empty(), "not minor 65536");
        let dev = ((65536u64 & !0xff) << 12) | (259 << 8);
        assert_eq!(mount_points(mountinfo, dev), [&b"/big"[..]]);
        assert!(mount_points(b"1 2\n\n  \nx y 0:53", 0x35).is_empty());
    }

    #[test]
    fn environ_and_preload_lists() {
        let environ = b"HOME=/root\0LD_PRELOAD_X=1\0LD_PRELOAD=/a.so:/b.so /c.so\0LD_PRELOAD=/d\0";
        let value = environ_value(environ, "LD_PRELOAD").expect("set");
        assert_eq!(value, b"/a.so:/b.so /c.so");
        assert_eq!(preload_paths(value), [&b"/a.so"[..], b"/b.so", b"/c.so"]);
        assert_eq!(environ_value(environ, "PATH"), None);
    }
}
