//! Integration tests of skiff-runtime-wasm, one binary (wasmtime's
//! `tests/all` pattern): command modules written inline as WAT, the
//! committed sample components (`samples/wasm/`), image resolution and the
//! compiled-artifact cache. The cpu-limit test has its own binary
//! (`tests/cpu_limit.rs`) so other tests' cpu use does not disturb it.

mod commands;
mod components;
mod images;
mod registry;
mod support;
