//! worker: a long-running WASI p2 command that logs a numbered line every
//! tick (1 s by default) until it is stopped.
//!
//! A wasm guest gets no signals: the node stops it by interrupting the
//! guest (epoch interruption), which works at any point of this loop. The
//! worker also stops on its own, exiting 0, when the file named by
//! `STOP_FILE` appears (e.g. created through `kubectl exec`), or after
//! `MAX_TICKS` ticks. `TICK_MS` changes the interval; `WORKER_NAME` the
//! prefix of each line.

use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let name = std::env::var("WORKER_NAME").unwrap_or_else(|_| "worker".to_string());
    let tick = Duration::from_millis(env_number("TICK_MS").unwrap_or(1000).max(1));
    let max_ticks = env_number("MAX_TICKS");
    let stop_file = std::env::var("STOP_FILE").ok();
    let started = Instant::now();
    println!("{name}: started (tick {} ms)", tick.as_millis());

    let mut count: u64 = 0;
    loop {
        count += 1;
        println!(
            "{name}: tick {count} (uptime {:.1}s)",
            started.elapsed().as_secs_f64()
        );
        if max_ticks.is_some_and(|max| count >= max) {
            println!("{name}: reached MAX_TICKS={count}, exiting");
            return;
        }
        if let Some(stop) = &stop_file
            && Path::new(stop).exists()
        {
            println!("{name}: stop file {stop} found after {count} ticks, exiting");
            return;
        }
        std::thread::sleep(tick);
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
