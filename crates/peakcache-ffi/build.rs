//! Gives the shared library the SONAME it is installed under (`libpeakcache.so.0`), so C hosts
//! record that name, not the Cargo artifact's. The header is not generated here: see
//! `gen-header.sh` (a pinned cbindgen, checked in, diff-checked).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpeakcache.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
