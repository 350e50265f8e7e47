//! The command line: `marquee [serve|migrate|seed]`.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use marquee_persistence::SeedPlan;

use crate::settings::Settings;
use crate::startup::{Application, connect_database};

#[derive(Debug, Parser)]
#[command(
    name = "marquee",
    version,
    about = "Concert reservations that stay fast under load"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print a bearer token for a user (and only the token), signed with auth.jwt_secret:
    /// for development and load tests.
    Token(TokenArgs),
    /// Show the request rates a user count implies, with the working (no database needed).
    Capacity(CapacityArgs),
    /// Create catalogue data. Without options: the demo catalogue, if there are no concerts
    /// yet. With any option: a bulk data set for load tests, added to what exists.
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id the token names (its `sub`).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub user: i64,
    /// How long the token is valid, e.g. 1h, 30m; at most auth.max_token_lifetime (24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Daily active users.
    #[arg(long, default_value_t = 100_000)]
    pub dau: u64,
    /// Requests per user per day.
    #[arg(long, default_value_t = 20.0)]
    pub visits: f64,
    /// Share of the day's requests that arrive in the peak, in (0, 1].
    #[arg(long, default_value_t = 0.7)]
    pub peak_share: f64,
    /// Length of the peak in hours.
    #[arg(long, default_value_t = 2.0)]
    pub peak_hours: f64,
    /// Provision for this multiple of the peak.
    #[arg(long, default_value_t = 1.0)]
    pub headroom: f64,
    /// Requests per second one instance sustains (from a load test): prints the count.
    #[arg(long)]
    pub per_instance: Option<f64>,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Concerts to create.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub concerts: Option<u32>,
    /// Schedules per concert.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub schedules: Option<u32>,
    /// Seats per schedule.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: Option<u32>,
}

impl SeedArgs {
    /// The bulk plan, or `None` for the demo catalogue.
    fn plan(&self) -> Option<SeedPlan> {
        if self.concerts.is_none() && self.schedules.is_none() && self.seats.is_none() {
            return None;
        }
        let demo = SeedPlan::DEMO;
        Some(SeedPlan {
            concerts: self.concerts.unwrap_or(demo.concerts),
            schedules_per_concert: self.schedules.unwrap_or(demo.schedules_per_concert),
            seats_per_schedule: self.seats.unwrap_or(demo.seats_per_schedule),
        })
    }
}

/// Runs a command that needs no settings; hands any other back.
pub fn run_without_settings(command: Command) -> Result<anyhow::Result<()>, Command> {
    match command {
        Command::Capacity(args) => Ok(capacity(&args)),
        other => Err(other),
    }
}

fn capacity(args: &CapacityArgs) -> anyhow::Result<()> {
    let plan = crate::capacity::Plan {
        dau: args.dau,
        visits: args.visits,
        peak_share: args.peak_share,
        peak_hours: args.peak_hours,
        headroom: args.headroom,
        per_instance: args.per_instance,
    };
    plan.validate()?;
    say(plan.explain().trim_end())
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Capacity(args) => capacity(&args),
        Command::Token(args) => {
            let user = marquee_domain::UserId::new(args.user)?;
            let token = settings.auth.tokens().mint(user, args.ttl)?;
            say(&token)
        }
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Migrate => {
            let pool = connect_database(&settings).await?;
            let applied = pool.migrate().await.context("migration failed")?;
            say(&if applied.is_empty() {
                "the database is up to date".to_owned()
            } else {
                format!(
                    "applied {} migration(s): {}",
                    applied.len(),
                    applied.join(", ")
                )
            })
        }
        Command::Seed(args) => {
            let pool = connect_database(&settings).await?;
            pool.migrate().await.context("migration failed")?;
            let report = match args.plan() {
                Some(plan) => Some(pool.seed(plan).await.context("seeding failed")?),
                None => pool.seed_demo_if_empty().await.context("seeding failed")?,
            };
            say(&match report {
                Some(r) => format!(
                    "created {} concerts, {} schedules and {} seats in {:.1?}",
                    r.concerts, r.schedules, r.seats, r.elapsed
                ),
                None => "the catalogue already has concerts; nothing created \
                         (pass --concerts/--schedules/--seats to add a bulk data set)"
                    .to_owned(),
            })
        }
    }
}

/// A command's result goes to stdout, so scripts can read it; logs go to stderr.
fn say(line: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout(), "{line}").context("cannot write to stdout")
}
