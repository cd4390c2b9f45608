//! hello: a WASI command that greets, prints its arguments and environment,
//! and exits 0 — the sample Job. Built for wasm32-wasip1 (hello.wasm) and
//! wasm32-wasip2 (hello-p2.wasm, a component).
//!
//! Env: `EXIT_CODE` (default 0) to exit with another code; `SLEEP_MS` to
//! wait before exiting (a Job that takes a moment).

use std::time::Duration;

fn main() {
    println!("Hello from skiff");
    for (i, arg) in std::env::args().enumerate() {
        println!("arg[{i}]={arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (key, value) in vars {
        println!("env {key}={value}");
    }
    if let Some(ms) = env_number("SLEEP_MS") {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let code = env_number("EXIT_CODE").unwrap_or(0);
    println!("hello: done, exiting with {code}");
    std::process::exit(i32::try_from(code).unwrap_or(1));
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
