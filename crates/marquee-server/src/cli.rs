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
    Capacity(Box<CapacityArgs>),
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
    #[command(flatten)]
    pub opening: OpeningArgs,
}

/// A ticket opening instead of a day: `--opening-users` and what the opening's users do.
/// The costs default to the figures measured on the reference machine (docs/operations.md,
/// "Capacity"); pass your own from `loadtest/run`'s "CPU per request".
#[derive(Debug, Args)]
pub struct OpeningArgs {
    /// Users arriving for a ticket opening: computes the instances, Redis shards and database
    /// cores the opening needs, instead of the daily rates.
    #[arg(long, conflicts_with_all = ["dau", "visits", "peak_share", "peak_hours", "per_instance"])]
    pub opening_users: Option<u64>,
    /// The time within which they all arrive.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, requires = "opening_users")]
    pub arrival: std::time::Duration,
    /// How often a waiting user polls (the server says 1 s at the front, at most 5 s behind).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, requires = "opening_users")]
    pub poll_every: std::time::Duration,
    /// Catalogue lookups per user during the opening.
    #[arg(long, default_value_t = 4.0, requires = "opening_users")]
    pub lookups_per_user: f64,
    /// Concerts opening at once, each with its own line.
    #[arg(long, default_value_t = 1, requires = "opening_users")]
    pub concerts: u64,
    /// Admissions per second per concert (queue.admit_per_second).
    #[arg(long, default_value_t = 100.0, requires = "opening_users")]
    pub admit_per_second: f64,
    /// Requests of one admitted user's booking (hold, charge, pay).
    #[arg(long, default_value_t = 3.0, requires = "opening_users")]
    pub booking_requests: f64,
    /// Cores of one instance.
    #[arg(long, default_value_t = 1.0, requires = "opening_users")]
    pub cores_per_instance: f64,
    /// The share of each core, shard and database to plan for.
    #[arg(long, default_value_t = 0.7, requires = "opening_users")]
    pub utilisation: f64,
    /// Marquee CPU microseconds per catalogue lookup.
    #[arg(long, default_value_t = LOOKUP_CPU_US, requires = "opening_users")]
    pub lookup_cpu_us: f64,
    /// Marquee CPU microseconds per waiting-room request (poll or join).
    #[arg(long, default_value_t = QUEUE_CPU_US, requires = "opening_users")]
    pub queue_cpu_us: f64,
    /// Marquee CPU microseconds per booking request.
    #[arg(long, default_value_t = BOOKING_CPU_US, requires = "opening_users")]
    pub booking_cpu_us: f64,
    /// Waiting-room requests (a script each) one Redis shard serves per second.
    #[arg(long, default_value_t = REDIS_OPS_PER_SHARD, requires = "opening_users")]
    pub redis_ops_per_shard: f64,
    /// PostgreSQL CPU microseconds per user through the line (the join's row, its admission
    /// and its end).
    #[arg(long, default_value_t = DB_JOIN_CPU_US, requires = "opening_users")]
    pub db_join_cpu_us: f64,
    /// PostgreSQL CPU microseconds per booking request.
    #[arg(long, default_value_t = DB_BOOKING_CPU_US, requires = "opening_users")]
    pub db_booking_cpu_us: f64,
    /// Cores of the PostgreSQL primary (the reference machine's two by default).
    #[arg(long, default_value_t = 2.0, requires = "opening_users")]
    pub db_cores: f64,
}

// Measured on the reference machine (2 cores) on 2026-12-07 with `loadtest/run ... --stack
// postgres`, from each run's "CPU per request"; docs/operations.md ("Capacity") has the runs
// and the arithmetic that splits the ticket opening's time between its requests.
/// `lookup`, 2,000 lookups/s: 7.40 s of marquee CPU for 116,582 requests.
const LOOKUP_CPU_US: f64 = 64.0;
/// `ticket-opening`, what its booking requests leave: (61.36 s - 60,000 x 395 us) / 369,255.
const QUEUE_CPU_US: f64 = 102.0;
/// `booking-rush`: 2.23 s for 5,651 requests.
const BOOKING_CPU_US: f64 = 395.0;
/// `ticket-opening`'s Redis, what its booking requests leave: 1 s / 27 us per request.
/// redis-benchmark's bare GET (105,000/s) is the ceiling, not what the line's scripts get.
const REDIS_OPS_PER_SHARD: f64 = 37_000.0;
/// `ticket-opening`'s PostgreSQL, what its booking requests leave, per user: the join's row,
/// its admission and its end, (54.40 s - 60,000 x 423 us) / 20,000.
const DB_JOIN_CPU_US: f64 = 1_450.0;
/// `booking-rush`'s PostgreSQL: 2.39 s for 5,651 requests.
const DB_BOOKING_CPU_US: f64 = 423.0;

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

impl OpeningArgs {
    fn opening(&self, users: u64) -> crate::capacity::Opening {
        crate::capacity::Opening {
            users,
            arrival: self.arrival.as_secs_f64(),
            poll_every: self.poll_every.as_secs_f64(),
            lookups_per_user: self.lookups_per_user,
            concerts: self.concerts,
            admit_per_second: self.admit_per_second,
            booking_requests: self.booking_requests,
            cores_per_instance: self.cores_per_instance,
            utilisation: self.utilisation,
            costs: crate::capacity::Costs {
                lookup_us: self.lookup_cpu_us,
                queue_us: self.queue_cpu_us,
                booking_us: self.booking_cpu_us,
                redis_ops_per_shard: self.redis_ops_per_shard,
                db_join_us: self.db_join_cpu_us,
                db_booking_us: self.db_booking_cpu_us,
                db_cores: self.db_cores,
            },
        }
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
    if let Some(users) = args.opening.opening_users {
        let opening = args.opening.opening(users);
        opening.validate()?;
        return say(opening.explain().trim_end());
    }
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
