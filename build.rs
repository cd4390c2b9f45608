//! Build script of the `skiff` package. For release builds on x86_64 Linux,
//! where rustc links with lld, it hands lld `build/symbol-order.txt`: the
//! functions an idle `skiff up` runs (start-up, the informers, leases,
//! heartbeats), which lld then places next to each other at the start of
//! `.text`. The kernel maps a binary's code 64 KiB around each page fault,
//! so with them scattered an idle `skiff up` has most of its 50 MB `.text`
//! resident; packed, only the part it runs. `scripts/symbol-order.sh`
//! regenerates the file; names it no longer finds are skipped, so a stale
//! file costs memory, never correctness. `SKIFF_SYMBOL_ORDER=0` turns it off
//! (e.g. for a linker other than lld).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=SKIFF_SYMBOL_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("PROFILE") != "release"
        || var("SKIFF_SYMBOL_ORDER") == "0"
    {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    if !order.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=skiff=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=skiff=-Wl,--no-warn-symbol-ordering");
}
