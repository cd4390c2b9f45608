//! The `skiff` binary: flag parsing and wiring only.
fn main() {}
