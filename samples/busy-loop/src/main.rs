//! busy-loop: spins forever on pure computation, never calling the host —
//! for cpu-limit and stop-within-grace-period tests.
//!
//! Every `REPORT_EVERY` iterations (default 2^26) it prints the iteration
//! count and the elapsed wall time, so a test can compare its rate with and
//! without `limits.cpu`. Only epoch interruption can stop it.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let report_every: u64 = std::env::var("REPORT_EVERY")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1 << 26);
    let started = Instant::now();
    println!("busy-loop: spinning");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut iterations: u64 = 0;
    loop {
        // xorshift: cheap work the optimiser cannot remove.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = black_box(state);
        iterations += 1;
        if iterations.is_multiple_of(report_every) {
            println!(
                "busy-loop: {iterations} iterations in {:.3}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
