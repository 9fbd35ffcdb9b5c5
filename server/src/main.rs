//! The `alliance` command line.

use std::process::ExitCode;

use alliance::{cli, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    // The demo's and the load tool's own services would drown their output in request logs.
    let quiet = matches!(arguments.command, cli::Command::Demo(_) | cli::Command::Bench(_));
    let default_level = if quiet { "warn" } else { "info" };
    telemetry::init(arguments.log_json, default_level);
    match cli::run(arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if matches!(error, cli::CliError::Stopped { .. }) {
                // The user or a service manager requested the stop, so it is not an error.
                eprintln!("{error}");
            } else {
                eprintln!("error: {error}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
