//! The `skiff` binary: flag parsing and wiring only. `skiff up` runs the whole
//! cluster in one process; `skiff server` and `skiff node` split it across
//! machines; `skiff store` backs up and restores the state store; the other
//! verbs are kubectl-like clients (see `cli`).

mod cli;
mod commands;

use clap::{Parser, Subcommand};

/// mimalloc: the API server allocates per request on every core, where glibc
/// malloc spent about a third of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// skiff: a WebAssembly-first orchestrator that speaks the Kubernetes API.
#[derive(Parser)]
#[command(name = "skiff", version, about)]
struct Args {
    /// Log filter (tracing EnvFilter syntax), also read from SKIFF_LOG.
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    log: String,
    /// kubeconfig for the client verbs (default: $KUBECONFIG, then skiff up's).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster in this process: store, API server, scheduler, controllers and a node.
    Up(commands::up::UpArgs),
    /// Run a control-plane member: store, API server, scheduler and controllers.
    Server(commands::server::ServerArgs),
    /// Run a node agent that joins a cluster.
    Node(commands::node::NodeArgs),
    /// Back up and restore the state store.
    Store {
        #[command(subcommand)]
        command: commands::store::StoreCommand,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    let args = Args::parse();
    let is_client = matches!(args.command, Command::Client(_));
    init_tracing(&args.log, is_client);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Up(up) => commands::up::run(up).await,
            Command::Server(server) => commands::server::run(server).await,
            Command::Node(node) => commands::node::run(node).await,
            Command::Store { command } => commands::store::run(command, args.kubeconfig).await,
            Command::Client(client) => cli::run(client, args.kubeconfig).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Client verbs' errors are already the one kubectl-style line.
        Err(err) if is_client => {
            eprintln!("{err}");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; client verbs only print warnings so their output stays clean.
fn init_tracing(filter: &str, is_client: bool) {
    let filter = if is_client && filter == "info" {
        "warn"
    } else {
        filter
    };
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .init();
}

/// mimalloc advises transparent huge pages on its arenas; then one touched
/// byte keeps 2 MiB resident, which made an idle `skiff up` ~50% larger
/// (84 MiB against 56 MiB) for no measured speed. Wasm linear memories do
/// not want them either: thousands of small ones would each round up.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a
    // per-process flag; no memory of ours is read or written.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        eprintln!(
            "warning: cannot disable transparent huge pages: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

/// Raises the soft limit on open files to the hard limit: every pod holds
/// descriptors (log files, pipes, preopened volume directories, sockets),
/// and the usual soft limit of 1024 runs out long before thousands of pods
/// do. A failure only warns: small clusters run fine on the default.
#[cfg(unix)]
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to ours.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit; keeping it");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        tracing::debug!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "open-file limit already at its hard limit"
        );
        return;
    }
    let set = |soft: libc::rlim_t| {
        let wanted = libc::rlimit {
            rlim_cur: soft,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer to ours.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            Ok(soft)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // macOS refuses a soft limit above OPEN_MAX (10240) when the hard limit
    // is unlimited, as Go's runtime found; try that next.
    #[cfg(target_vendor = "apple")]
    let result = set(limit.rlim_max).or_else(|_| set(limit.rlim_max.min(10240)));
    #[cfg(not(target_vendor = "apple"))]
    let result = set(limit.rlim_max);
    match result {
        Ok(soft) => tracing::debug!(
            from = limit.rlim_cur,
            to = soft,
            "raised the open-file limit (RLIMIT_NOFILE soft limit)"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "cannot raise the open-file limit; keeping the soft limit"
        ),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}
