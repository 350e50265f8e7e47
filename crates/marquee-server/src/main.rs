//! `marquee`: parse the command line, load settings, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use marquee_server::cli::{Cli, Command};
use marquee_server::{Settings, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line; a backtrace helps nobody running it.
            eprintln!("marquee: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command =
        match marquee_server::cli::run_without_settings(cli.command.unwrap_or(Command::Serve)) {
            Ok(done) => return done,
            Err(command) => command,
        };
    let settings = Settings::load()?;
    telemetry::init(&settings);
    marquee_server::cli::run(command, settings).await
}
