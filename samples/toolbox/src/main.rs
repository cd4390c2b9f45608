//! toolbox: a tiny busybox-like WASI command for `kubectl exec` and exec
//! probes in wasm pods: `env`, `printenv`, `ls`, `cat`, `echo`, `touch`,
//! `rm`, `mkdir`, `write`, `test`, `sleep`, `tick`, `true`, `false`, `exit`,
//! `pwd`.
//!
//! The applet is argv[0] (its base name) when that names one, else argv[1]
//! (so both `ls /config` and `toolbox.wasm ls /config` work). Exit codes
//! follow the usual tools: 0 success, 1 failure, 2 usage error; an unknown
//! applet exits 125 (WASI allows only codes below 126, so not a shell's 127).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const APPLETS: &[&str] = &[
    "env", "printenv", "ls", "cat", "echo", "touch", "rm", "mkdir", "write", "test", "sleep",
    "tick", "true", "false", "exit", "pwd", "help",
];

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let first = argv.first().map(|a| base_name(a)).unwrap_or_default();
    let args: &[String] = if APPLETS.contains(&first.as_str()) {
        &argv
    } else {
        argv.get(1..).unwrap_or(&[])
    };
    let code = match args.split_first() {
        Some((applet, rest)) => run(&base_name(applet), rest),
        None => usage(),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn base_name(arg: &str) -> String {
    let name = arg.rsplit('/').next().unwrap_or(arg);
    name.strip_suffix(".wasm").unwrap_or(name).to_string()
}

fn usage() -> i32 {
    eprintln!(
        "usage: toolbox <applet> [args...]; applets: {}",
        APPLETS.join(" ")
    );
    2
}

fn run(applet: &str, args: &[String]) -> i32 {
    match applet {
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
            0
        }
        "printenv" => printenv(args),
        "ls" => ls(args),
        "cat" => cat(args),
        "echo" => {
            println!("{}", args.join(" "));
            0
        }
        "touch" => each_path(args, |p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(|_| ())
        }),
        "rm" => each_path(args, |p| std::fs::remove_file(p)),
        "mkdir" => each_path(args, |p| std::fs::create_dir_all(p)),
        "write" => match args.split_first() {
            Some((path, words)) => report(path, std::fs::write(path, words.join(" ") + "\n")),
            None => usage(),
        },
        "test" => test(args),
        "sleep" => match args.first().and_then(|s| s.parse::<f64>().ok()) {
            Some(secs) if secs >= 0.0 => {
                std::thread::sleep(Duration::from_secs_f64(secs));
                0
            }
            _ => usage(),
        },
        "tick" => tick(args),
        "true" => 0,
        "false" => 1,
        "exit" => args.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        "pwd" => match std::env::current_dir() {
            Ok(dir) => {
                println!("{}", dir.display());
                0
            }
            Err(_) => {
                println!("/");
                0
            }
        },
        "help" => {
            println!("applets: {}", APPLETS.join(" "));
            0
        }
        other => {
            eprintln!("toolbox: {other}: command not found");
            125
        }
    }
}

/// `tick FILE [MS]`: appends `tick N` to FILE every MS (1000) milliseconds
/// until it is stopped (a long-running command that leaves a trace).
fn tick(args: &[String]) -> i32 {
    let (path, every) = match args {
        [path] => (path, 1000),
        [path, ms] => match ms.parse::<u64>() {
            Ok(ms) => (path, ms),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let mut file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tick: {path}: {e}");
            return 1;
        }
    };
    for n in 1u64.. {
        if let Err(e) = writeln!(file, "tick {n}").and_then(|()| file.flush()) {
            eprintln!("tick: {path}: {e}");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(every));
    }
    0
}

fn printenv(args: &[String]) -> i32 {
    let mut code = 0;
    for name in args {
        match std::env::var(name) {
            Ok(v) => println!("{v}"),
            Err(_) => code = 1,
        }
    }
    code
}

fn ls(args: &[String]) -> i32 {
    let long = args.iter().any(|a| a == "-l");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let paths = if paths.is_empty() {
        vec![".".to_string()]
    } else {
        paths.into_iter().cloned().collect()
    };
    let mut code = 0;
    for path in &paths {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ls: {path}: {e}");
                code = 1;
                continue;
            }
        };
        if !meta.is_dir() {
            print_entry(path, &meta, long);
            continue;
        }
        if paths.len() > 1 {
            println!("{path}:");
        }
        let mut entries: Vec<(String, std::fs::Metadata)> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().ok()?,
                    ))
                })
                .collect(),
            Err(e) => {
                eprintln!("ls: {path}: {e}");
                code = 1;
                continue;
            }
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in entries {
            print_entry(&name, &meta, long);
        }
    }
    code
}

fn print_entry(name: &str, meta: &std::fs::Metadata, long: bool) {
    let suffix = if meta.is_dir() { "/" } else { "" };
    if long {
        let kind = if meta.is_dir() {
            'd'
        } else if meta.is_symlink() {
            'l'
        } else {
            '-'
        };
        println!("{kind} {:>10} {name}{suffix}", meta.len());
    } else {
        println!("{name}{suffix}");
    }
}

fn cat(args: &[String]) -> i32 {
    let mut out = std::io::stdout();
    if args.is_empty() {
        let mut buf = Vec::new();
        return match std::io::stdin().read_to_end(&mut buf) {
            Ok(_) => {
                let _ = out.write_all(&buf);
                0
            }
            Err(e) => {
                eprintln!("cat: stdin: {e}");
                1
            }
        };
    }
    let mut code = 0;
    for path in args {
        match std::fs::read(path) {
            Ok(bytes) => {
                let _ = out.write_all(&bytes);
            }
            Err(e) => {
                eprintln!("cat: {path}: {e}");
                code = 1;
            }
        }
    }
    code
}

fn test(args: &[String]) -> i32 {
    let ok = match args {
        [flag, path] if flag == "-e" => Path::new(path).exists(),
        [flag, path] if flag == "-f" => Path::new(path).is_file(),
        [flag, path] if flag == "-d" => Path::new(path).is_dir(),
        [flag, path] if flag == "-s" => std::fs::metadata(path).is_ok_and(|m| m.len() > 0),
        [flag, s] if flag == "-n" => !s.is_empty(),
        [flag, s] if flag == "-z" => s.is_empty(),
        [a, op, b] if op == "=" => a == b,
        [a, op, b] if op == "!=" => a != b,
        _ => return usage(),
    };
    if ok { 0 } else { 1 }
}

fn each_path(args: &[String], op: impl Fn(&str) -> std::io::Result<()>) -> i32 {
    if args.is_empty() {
        return usage();
    }
    args.iter().map(|p| report(p, op(p))).max().unwrap_or(0)
}

fn report(path: &str, result: std::io::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("toolbox: {path}: {e}");
            1
        }
    }
}
