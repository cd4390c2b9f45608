//! memory-bomb: allocates (and touches) memory in steps until the host
//! refuses to grow linear memory — for `resources.limits.memory` tests.
//!
//! Each step is `STEP_MB` MiB (default 1) and is logged with the running
//! total, so the logs show how far the guest got before it was stopped.
//! When the allocation fails the Rust runtime aborts (a trap), which the
//! node reports as OOMKilled. `DELAY_MS` pauses between steps (default 0).

use std::time::Duration;

fn main() {
    let step_mb = env_number("STEP_MB").unwrap_or(1).max(1) as usize;
    let delay = env_number("DELAY_MS").unwrap_or(0);
    println!("memory-bomb: allocating {step_mb} MiB at a time until memory runs out");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut total_mb = 0usize;
    loop {
        // Touch every page so the memory is really committed, not just reserved.
        let chunk = vec![0xA5u8; step_mb * 1024 * 1024];
        hoard.push(chunk);
        total_mb += step_mb;
        println!("memory-bomb: holding {total_mb} MiB");
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
