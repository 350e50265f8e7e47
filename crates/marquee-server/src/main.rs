//! `marquee`: parse the command line, load settings, set up logging, run.

use clap::Parser;
use marquee_server::cli::{Cli, Command};
use marquee_server::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    telemetry::init(&settings);
    marquee_server::cli::run(cli.command.unwrap_or(Command::Serve), settings).await
}
