//! What `doctor` reads of another process: any file as an ELF executable or library (its
//! interpreter, dynamic section, notes and sections), and any text as `/proc/PID/maps`,
//! `/proc/PID/mountinfo` or `/proc/PID/environ`; answers or errors, never a panic.
#![no_main]

use fakenotify_ctl::procinfo::{
    elf_linking, environ_value, mapped_files, mount_points, preload_paths,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(linking) = elf_linking(data) {
        assert!(linking.dynamic || linking.needed == 0, "NEEDED entries come from PT_DYNAMIC");
    }
    for mapping in mapped_files(data) {
        assert!(mapping.path.starts_with(b"/") && mapping.inode != 0);
    }
    for dev in [0x35, 0x801, u64::MAX] {
        assert!(mount_points(data, dev).iter().all(|p| !p.contains(&b'\n')));
    }
    if let Some(value) = environ_value(data, "LD_PRELOAD") {
        assert!(preload_paths(value).iter().all(|p| !p.is_empty()));
    }
});
