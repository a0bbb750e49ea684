//! `ferry`: the sync client's command line and daemon. Parses the command
//! line and runs the verb (`ferry_client::cli`).

use clap::Parser;
use ferry_client::cli::Command;
use ferry_client::config::Dirs;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Ferry: keep a folder in sync across your devices")]
struct Cli {
    /// On an error, show its details (and a backtrace with RUST_BACKTRACE=1).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

fn main() -> std::process::ExitCode {
    ferry_client::alloc::use_one_heap();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match start(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A sentence with what to do; the details (a backtrace) only when asked for.
        Err(e) if verbose => {
            eprintln!("ferry: {e:?}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli.command);
    // Few threads: each one keeps memory (stack, allocator arena) once used.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(8).enable_all().build()?;
    let r = rt.block_on(async {
        tokio::select! {
            r = ferry_client::cli::run(cli.command) => r,
            // Ctrl-C or SIGTERM: stop (a daemon resumes from its saved state next time).
            _ = ferry_shared::signal::shutdown() => Ok(()),
        }
    });
    // Blocking work still under way (the tray's loop, a file being hashed)
    // gets a moment, not forever: a signal means stop. Nothing is lost by
    // it — files are written to a temp file and renamed, state in SQLite
    // transactions.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    r
}

/// Logs go to stderr; the daemon's also to a rotating file in the state
/// directory (`ferry logs` reads it).
fn init_logging(command: &Command) {
    use ferry_client::daemon::logs;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let file = command
        .runs_daemon()
        .then(|| Dirs::locate().ok())
        .flatten()
        .and_then(|d| logs::RotatingFile::open(&logs::log_file(&d.state), logs::MAX_BYTES).ok())
        .map(|f| tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)));
    tracing_subscriber::registry().with(filter).with(stderr).with(file).init();
}
