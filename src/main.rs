//! `herald`: parse the command line, start logging, run.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    herald::telemetry::init();
    let cli = herald::cli::Cli::parse();
    match herald::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
