//! The library's version, as macros in the header and as a string at run time.

use std::ffi::c_char;

/// The major version of the header (`PEAKCACHE_VERSION_MAJOR`). Compare with `peakcache_version()`
/// at start-up to catch a host built against another header than the library it loaded.
pub const PEAKCACHE_VERSION_MAJOR: u32 = 0;
/// The minor version of the header.
pub const PEAKCACHE_VERSION_MINOR: u32 = 2;
/// The patch version of the header.
pub const PEAKCACHE_VERSION_PATCH: u32 = 0;

/// The library's version, `"MAJOR.MINOR.PATCH"`, as a static NUL-terminated string. Never free it.
#[no_mangle]
pub extern "C" fn peakcache_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_cargo_toml() {
        assert_eq!(
            PEAKCACHE_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            PEAKCACHE_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            PEAKCACHE_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        let s = unsafe { std::ffi::CStr::from_ptr(peakcache_version()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn header_carries_the_same_version() {
        let header = include_str!("../../../include/peakcache.h");
        for (name, v) in [
            ("MAJOR", PEAKCACHE_VERSION_MAJOR),
            ("MINOR", PEAKCACHE_VERSION_MINOR),
            ("PATCH", PEAKCACHE_VERSION_PATCH),
        ] {
            let line = format!("#define PEAKCACHE_VERSION_{name} {v}");
            assert!(header.contains(&line), "header lacks `{line}`");
        }
    }
}
