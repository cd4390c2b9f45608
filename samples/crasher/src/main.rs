//! crasher: prints a message to stdout and stderr and exits with code 1
//! (or `EXIT_CODE`), after `DELAY_MS` (default 0) — the crash-loop sample.

use std::time::Duration;

fn main() {
    let delay = env_number("DELAY_MS").unwrap_or(0);
    let code = env_number("EXIT_CODE").unwrap_or(1);
    println!("crasher: starting, will fail in {delay} ms");
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    eprintln!("crasher: something went wrong, exiting with code {code}");
    std::process::exit(i32::try_from(code).unwrap_or(1));
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
