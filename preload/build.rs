//! Link settings for libfakenotify.so: no C start files. The library needs no constructor, and
//! without crti/crtbeginS it references no `__cxa_finalize`, `__gmon_start__` or
//! `_ITM_*` symbols of the C runtime, so `readelf -d` shows only what the hooks use.
//! (rustc already links cdylibs with `-nodefaultlibs`; with `no_std` no crate asks for `-lc`,
//! so there is no NEEDED entry.)

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
}
