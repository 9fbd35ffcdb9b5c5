//! The `alliance` command line.

use std::process::ExitCode;

use alliance::{cli, telemetry};
use clap::Parser;

/// jemalloc, because it returns freed memory to the system from a
/// background thread: glibc keeps most of what the store's scans at open
/// freed, about 90 MB for a million chats.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    // The demo's and the load tool's own services would drown their output in request logs.
    let quiet = matches!(arguments.command, cli::Command::Demo(_) | cli::Command::Bench(_));
    let default_level = if quiet { "warn" } else { "info" };
    let log_json = arguments.log_json;
    telemetry::init(log_json, default_level);
    #[cfg(unix)]
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "could not start the allocator's background thread; freed memory returns to the system later");
    }
    match cli::run(arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The user or a service manager requested the stop, so it is not an error.
            let stopped = matches!(error, cli::CliError::Stopped { .. });
            if log_json {
                // One JSON line like the others, for log collectors that parse every line.
                if stopped {
                    tracing::info!(%error, "stopped");
                } else {
                    tracing::error!(%error, "the command failed");
                }
            } else if stopped {
                eprintln!("{error}");
            } else {
                eprintln!("error: {error}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
