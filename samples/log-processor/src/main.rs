//! log-processor: the sidecar of the web sample. It tails the access log
//! the web container appends to in their shared emptyDir and, every
//! `REPORT_MS` (default 2000), prints how many requests it has seen in
//! total and per path.
//!
//! Env: `LOG_FILE` (default /shared/access.log). The file may not exist
//! yet when the sidecar starts; it waits for it. Lines look like
//! `<unix-millis> <METHOD> <path> <status>` (see web/src/lib.rs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

fn main() {
    let path = std::env::var("LOG_FILE").unwrap_or_else(|_| "/shared/access.log".to_string());
    let report = Duration::from_millis(
        std::env::var("REPORT_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2000u64)
            .max(10),
    );
    println!("log-processor: tailing {path}");

    let mut tail = Tail::default();
    loop {
        match tail.poll(&path) {
            Ok(()) => println!("log-processor: {}", tail.summary()),
            Err(e) => println!("log-processor: waiting for {path}: {e}"),
        }
        std::thread::sleep(report);
    }
}

/// Reads what was appended to the log since the last poll and counts it.
#[derive(Default)]
struct Tail {
    offset: u64,
    partial: String,
    total: u64,
    by_path: BTreeMap<String, u64>,
}

impl Tail {
    fn poll(&mut self, path: &str) -> std::io::Result<()> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated or replaced: start over from the beginning.
            self.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.count(line.trim_end());
        }
        Ok(())
    }

    fn count(&mut self, line: &str) {
        let mut fields = line.split_whitespace();
        let (Some(_time), Some(_method), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let path = path.split('?').next().unwrap_or(path);
        self.total += 1;
        *self.by_path.entry(path.to_string()).or_default() += 1;
    }

    fn summary(&self) -> String {
        let paths: Vec<String> = self
            .by_path
            .iter()
            .map(|(p, n)| format!("{p}={n}"))
            .collect();
        format!("{} requests [{}]", self.total, paths.join(" "))
    }
}
