//! The `skiff` binary: flag parsing and wiring only (being written).

#[allow(dead_code)] // until main() wires the client verbs (lead)
mod cli;
fn main() {}
