//! Capacity arithmetic: from daily users to the request rates a load test must hold, with
//! the working shown, because the original plan got its peak wrong (it stated 97/s for a
//! peak that is 194/s).

use std::fmt::Write;

/// The original system's load-test rate, which the report explains.
pub const ORIGINAL_RATE: f64 = 97.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Daily active users.
    pub dau: u64,
    /// Requests per user per day.
    pub visits: f64,
    /// Share of the day's requests that arrive in the peak, in (0, 1].
    pub peak_share: f64,
    /// Length of the peak, in hours, in (0, 24].
    pub peak_hours: f64,
    /// Multiplier on the peak to provision for (1 = none).
    pub headroom: f64,
    /// Requests per second one instance sustains, if known.
    pub per_instance: Option<f64>,
}

/// Why a plan makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(String);

impl Plan {
    pub fn validate(&self) -> Result<(), PlanError> {
        let fail = |message: &str| Err(PlanError(message.to_owned()));
        if self.dau == 0 {
            return fail("--dau must be at least 1");
        }
        if !(self.visits.is_finite() && self.visits > 0.0) {
            return fail("--visits must be more than 0");
        }
        if !(self.peak_share > 0.0 && self.peak_share <= 1.0) {
            return fail("--peak-share must be more than 0 and at most 1");
        }
        if !(self.peak_hours > 0.0 && self.peak_hours <= 24.0) {
            return fail("--peak-hours must be more than 0 and at most 24");
        }
        if !(self.headroom.is_finite() && self.headroom >= 1.0) {
            return fail("--headroom must be 1 or more");
        }
        if self
            .per_instance
            .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
        {
            return fail("--per-instance must be more than 0");
        }
        Ok(())
    }

    pub fn requests_per_day(&self) -> f64 {
        self.dau as f64 * self.visits
    }

    pub fn average_rate(&self) -> f64 {
        self.requests_per_day() / 86_400.0
    }

    pub fn peak_requests(&self) -> f64 {
        self.requests_per_day() * self.peak_share
    }

    pub fn peak_rate(&self) -> f64 {
        self.peak_requests() / (self.peak_hours * 3_600.0)
    }

    /// The hours over which the peak's requests would have to be spread to arrive at `rate`.
    pub fn hours_at(&self, rate: f64) -> f64 {
        self.peak_requests() / rate / 3_600.0
    }

    /// The working, one step per line.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let day = self.requests_per_day();
        let peak = self.peak_requests();
        let rate = self.peak_rate();
        let _ = writeln!(
            out,
            "requests per day  {} users x {} visits = {} requests",
            thousands(self.dau as f64),
            self.visits,
            thousands(day)
        );
        let _ = writeln!(
            out,
            "average           {} requests / 86,400 s = {:.1} requests/s",
            thousands(day),
            self.average_rate()
        );
        let _ = writeln!(
            out,
            "peak              {:.0} % of them = {} requests in {} h ({} s) = {:.1} requests/s",
            self.peak_share * 100.0,
            thousands(peak),
            self.peak_hours,
            thousands(self.peak_hours * 3_600.0),
            rate
        );
        let _ = writeln!(
            out,
            "the original 97/s {} requests / 97 per s = {} s = {:.1} h: the peak spread over {:.1} hours, not {}",
            thousands(peak),
            thousands(peak / ORIGINAL_RATE),
            self.hours_at(ORIGINAL_RATE),
            self.hours_at(ORIGINAL_RATE),
            self.peak_hours
        );
        let target = rate * self.headroom;
        if self.headroom > 1.0 {
            let _ = writeln!(
                out,
                "with headroom     {:.1} requests/s x {} = {:.1} requests/s",
                rate, self.headroom, target
            );
        }
        if let Some(per_instance) = self.per_instance {
            let _ = writeln!(
                out,
                "instances         {:.1} / {} per instance = {:.2}: {} instance(s), plus one to lose",
                target,
                per_instance,
                target / per_instance,
                (target / per_instance).ceil().max(1.0)
            );
        }
        out
    }
}

/// A ticket opening: everyone arrives within `arrival`, waits in the waiting room polling every
/// `poll_every`, browses the catalogue, and books once admitted. What it costs comes from
/// [`Costs`], measured on a real run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opening {
    /// Users who arrive for the opening.
    pub users: u64,
    /// The time within which they all arrive, in seconds.
    pub arrival: f64,
    /// How often a waiting user polls, in seconds (the server tells it: at most 5 s).
    pub poll_every: f64,
    /// Catalogue lookups per user during the opening (a concert, its schedules, its seats).
    pub lookups_per_user: f64,
    /// Concerts opening at once; each has its own line.
    pub concerts: u64,
    /// Admissions per second per concert (`queue.admit_per_second`).
    pub admit_per_second: f64,
    /// Requests of one admitted user's booking: hold, charge, pay.
    pub booking_requests: f64,
    /// Cores of one instance.
    pub cores_per_instance: f64,
    /// The share of a core, instance or shard to plan for, in (0, 1].
    pub utilisation: f64,
    pub costs: Costs,
}

/// What one request costs, measured with `loadtest/run` (its report's "CPU per request", from
/// the processes' CPU time), and what one Redis and one PostgreSQL serve, measured with
/// redis-benchmark and pgbench. docs/operations.md ("Capacity") has the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Marquee CPU microseconds per catalogue lookup.
    pub lookup_us: f64,
    /// Marquee CPU microseconds per waiting-room request (a poll, or a join).
    pub queue_us: f64,
    /// Marquee CPU microseconds per booking request.
    pub booking_us: f64,
    /// Waiting-room requests (a script each) one Redis shard serves per second.
    pub redis_ops_per_shard: f64,
    /// PostgreSQL CPU microseconds per user through the line: the join's row (written in
    /// batches), its admission and its end.
    pub db_join_us: f64,
    /// PostgreSQL CPU microseconds per booking request.
    pub db_booking_us: f64,
    /// Cores of the PostgreSQL primary.
    pub db_cores: f64,
}

/// The rates an opening brings, and what serves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpeningPlan {
    pub joins_per_second: f64,
    /// When everyone has arrived and few are admitted: every user polls.
    pub polls_per_second: f64,
    pub lookups_per_second: f64,
    pub booking_requests_per_second: f64,
    /// Cores of Marquee the rates take, at the planned utilisation.
    pub cores: f64,
    /// Instances for those cores, plus one to lose.
    pub instances: u64,
    /// Redis commands per second on the shard of one concert's line: its polls and joins.
    pub line_ops_per_second: f64,
    /// Redis Cluster masters: the lines, one shard each at most, and the catalogue's keys.
    pub shards: u64,
    /// The shortest poll interval one shard can carry for one concert's line.
    pub shortest_poll_for_one_shard: f64,
    /// Cores of the PostgreSQL primary the joins and bookings take.
    pub db_cores: f64,
}

impl Opening {
    pub fn validate(&self) -> Result<(), PlanError> {
        let positive = |value: f64| value.is_finite() && value > 0.0;
        let checks: [(bool, &str); 13] = [
            (self.users > 0, "--opening-users must be at least 1"),
            (positive(self.arrival), "--arrival must be more than 0"),
            (
                positive(self.poll_every),
                "--poll-every must be more than 0",
            ),
            (
                self.lookups_per_user.is_finite() && self.lookups_per_user >= 0.0,
                "--lookups-per-user must be 0 or more",
            ),
            (self.concerts > 0, "--concerts must be at least 1"),
            (
                positive(self.admit_per_second),
                "--admit-per-second must be more than 0",
            ),
            (
                self.booking_requests.is_finite() && self.booking_requests >= 0.0,
                "--booking-requests must be 0 or more",
            ),
            (
                positive(self.cores_per_instance),
                "--cores-per-instance must be more than 0",
            ),
            (
                positive(self.utilisation) && self.utilisation <= 1.0,
                "--utilisation must be more than 0 and at most 1",
            ),
            (
                [
                    self.costs.lookup_us,
                    self.costs.queue_us,
                    self.costs.booking_us,
                ]
                .into_iter()
                .all(positive),
                "--lookup-cpu-us, --queue-cpu-us and --booking-cpu-us must be more than 0",
            ),
            (
                positive(self.costs.redis_ops_per_shard),
                "--redis-ops-per-shard must be more than 0",
            ),
            (
                [self.costs.db_join_us, self.costs.db_booking_us]
                    .into_iter()
                    .all(positive),
                "--db-join-cpu-us and --db-booking-cpu-us must be more than 0",
            ),
            (
                positive(self.costs.db_cores),
                "--db-cores must be more than 0",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(PlanError(message.to_owned())),
            None => Ok(()),
        }
    }

    pub fn plan(&self) -> OpeningPlan {
        let users = self.users as f64;
        let concerts = self.concerts as f64;
        let costs = &self.costs;
        let joins = users / self.arrival;
        let polls = users / self.poll_every;
        let lookups = users * self.lookups_per_user / self.arrival;
        let bookings = self.admit_per_second * concerts * self.booking_requests;
        // All at once, the worst second: arrivals still coming while the line polls.
        let cpu_us = lookups * costs.lookup_us
            + (joins + polls) * costs.queue_us
            + bookings * costs.booking_us;
        let cores = cpu_us / 1e6 / self.utilisation;
        let instances = (cores / self.cores_per_instance).ceil().max(1.0) as u64 + 1;
        // A line is one hash tag, so one shard: its polls and joins, one command each.
        let line = (joins + polls) / concerts;
        let shard = costs.redis_ops_per_shard * self.utilisation;
        // One line cannot be split across shards, so more shards than lines do not help.
        let shards = ((line * concerts / shard).ceil().max(1.0) as u64).min(self.concerts);
        let db_cores =
            (joins * costs.db_join_us + bookings * costs.db_booking_us) / 1e6 / self.utilisation;
        OpeningPlan {
            joins_per_second: joins,
            polls_per_second: polls,
            lookups_per_second: lookups,
            booking_requests_per_second: bookings,
            cores,
            instances,
            line_ops_per_second: line,
            shards,
            shortest_poll_for_one_shard: users / concerts / shard,
            db_cores,
        }
    }

    /// The working, one step per line, ending with what to run.
    pub fn explain(&self) -> String {
        let plan = self.plan();
        let costs = &self.costs;
        let utilisation = self.utilisation * 100.0;
        let mut out = String::new();
        let mut line = |text: String| {
            let _ = writeln!(out, "{text}");
        };
        line(format!(
            "joins             {} users / {} s = {} joins/s",
            thousands(self.users as f64),
            self.arrival,
            thousands(plan.joins_per_second)
        ));
        line(format!(
            "polls             {} waiting / a poll every {} s = {} polls/s",
            thousands(self.users as f64),
            self.poll_every,
            thousands(plan.polls_per_second)
        ));
        line(format!(
            "lookups           {} users x {} / {} s = {} lookups/s",
            thousands(self.users as f64),
            self.lookups_per_user,
            self.arrival,
            thousands(plan.lookups_per_second)
        ));
        line(format!(
            "bookings          {} admitted/s x {} concert(s) x {} requests = {} booking requests/s",
            self.admit_per_second,
            self.concerts,
            self.booking_requests,
            thousands(plan.booking_requests_per_second)
        ));
        line(format!(
            "marquee CPU       {} x {} us + {} x {} us + {} x {} us = {:.1} cores at {utilisation:.0} %",
            thousands(plan.lookups_per_second),
            costs.lookup_us,
            thousands(plan.joins_per_second + plan.polls_per_second),
            costs.queue_us,
            thousands(plan.booking_requests_per_second),
            costs.booking_us,
            plan.cores
        ));
        line(format!(
            "instances         {:.1} cores / {} per instance: {} instance(s), plus one to lose = {}",
            plan.cores,
            self.cores_per_instance,
            plan.instances - 1,
            plan.instances
        ));
        let shard = costs.redis_ops_per_shard * self.utilisation;
        line(format!(
            "redis, one line   {} joins/s + polls/s per concert on one shard (a line is one hash tag), of {} a shard serves at {utilisation:.0} %",
            thousands(plan.line_ops_per_second),
            thousands(shard)
        ));
        if plan.line_ops_per_second > shard {
            let poll = plan.shortest_poll_for_one_shard.ceil() as u64;
            line(format!(
                "                  too many for one shard: polls every {:.1} s or more carry the line ({} / {} per s): queue.max_poll_interval = \"{poll}s\" and queue.idle_timeout = \"{}s\" or more; more shards do not help one line",
                plan.shortest_poll_for_one_shard,
                thousands(self.users as f64 / self.concerts as f64),
                thousands(shard),
                poll * 3,
            ));
        }
        // redis-cli --cluster create wants three masters at least.
        let masters = plan.shards.max(3);
        line(format!(
            "redis cluster     load for {} shard(s); {masters} masters (a cluster has 3 at least), each with a replica to fail over to = {} nodes",
            plan.shards,
            masters * 2
        ));
        line(format!(
            "postgresql        {} joins/s x {} us + {} booking requests/s x {} us = {:.2} cores at {utilisation:.0} %, of the primary's {}",
            thousands(plan.joins_per_second),
            costs.db_join_us,
            thousands(plan.booking_requests_per_second),
            costs.db_booking_us,
            plan.db_cores,
            costs.db_cores
        ));
        if plan.db_cores > costs.db_cores {
            line(format!(
                "                  more than the primary has: spread the arrivals over {:.0} s or more, or give it {:.0} cores",
                self.arrival * plan.db_cores / costs.db_cores,
                plan.db_cores.ceil()
            ));
        }
        line(
            "replicas          catalogue cache misses only (the cache serves the lookups): one replica, for failover and database.replica_url"
                .to_owned(),
        );
        out
    }
}

/// `1234567.0` as `1,234,567`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && digit.is_ascii_digit() {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_plan() -> Plan {
        Plan {
            dau: 100_000,
            visits: 20.0,
            peak_share: 0.7,
            peak_hours: 2.0,
            headroom: 1.0,
            per_instance: None,
        }
    }

    #[test]
    fn the_seeds_numbers() {
        let plan = seed_plan();
        assert_eq!(plan.requests_per_day(), 2_000_000.0);
        assert_eq!(format!("{:.1}", plan.average_rate()), "23.1");
        assert_eq!(format!("{:.1}", plan.peak_rate()), "194.4");
        // 97/s is the same peak spread over four hours.
        assert_eq!(format!("{:.1}", plan.hours_at(ORIGINAL_RATE)), "4.0");
    }

    #[test]
    fn explains_with_headroom_and_instances() {
        let plan = Plan {
            headroom: 2.0,
            per_instance: Some(150.0),
            ..seed_plan()
        };
        let text = plan.explain();
        for line in [
            "100,000 users x 20 visits = 2,000,000 requests",
            "= 23.1 requests/s",
            "1,400,000 requests in 2 h (7,200 s) = 194.4 requests/s",
            "the peak spread over 4.0 hours, not 2",
            "= 388.9 requests/s",
            "3 instance(s)",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    fn opening() -> Opening {
        Opening {
            users: 1_000_000,
            arrival: 60.0,
            poll_every: 5.0,
            lookups_per_user: 4.0,
            concerts: 1,
            admit_per_second: 100.0,
            booking_requests: 3.0,
            cores_per_instance: 1.0,
            utilisation: 0.5,
            costs: Costs {
                lookup_us: 50.0,
                queue_us: 100.0,
                booking_us: 1_000.0,
                redis_ops_per_shard: 100_000.0,
                db_join_us: 30.0,
                db_booking_us: 400.0,
                db_cores: 2.0,
            },
        }
    }

    #[test]
    fn an_opening_of_a_million() {
        let plan = opening().plan();
        assert_eq!(plan.joins_per_second.round(), 16_667.0);
        assert_eq!(plan.polls_per_second, 200_000.0);
        assert_eq!(plan.lookups_per_second.round(), 66_667.0);
        assert_eq!(plan.booking_requests_per_second, 300.0);
        // (66,667 x 50 + 216,667 x 100 + 300 x 1,000) us = 25.3 core-seconds/s, at 50 %.
        assert_eq!(format!("{:.1}", plan.cores), "50.6");
        assert_eq!(plan.instances, 52);
        // One line, one shard, whatever the cluster's size.
        assert_eq!(plan.shards, 1);
        assert_eq!(plan.line_ops_per_second.round(), 216_667.0);
        // 1,000,000 users / 50,000 commands a second = a poll every 20 s.
        assert_eq!(plan.shortest_poll_for_one_shard, 20.0);
        // (16,667 x 30 + 300 x 400) us = 0.62 core-seconds/s, at 50 %.
        assert_eq!(format!("{:.2}", plan.db_cores), "1.24");
        let text = opening().explain();
        for line in [
            "16,667 joins/s",
            "200,000 polls/s",
            "51 instance(s), plus one to lose = 52",
            "polls every 20.0 s or more carry the line",
            "queue.max_poll_interval = \"20s\" and queue.idle_timeout = \"60s\" or more",
            "3 masters (a cluster has 3 at least)",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("more than the primary has"), "{text}");
    }

    #[test]
    fn lines_spread_over_shards_and_a_busy_primary_is_named() {
        let many = Opening {
            concerts: 10,
            users: 2_000_000,
            costs: Costs {
                db_join_us: 200.0,
                ..opening().costs
            },
            ..opening()
        };
        let plan = many.plan();
        // 10 lines of 200,000 users: 43,333 commands/s each, 9 shards' worth at 50,000.
        assert_eq!(plan.shards, 9);
        assert!(plan.line_ops_per_second < 50_000.0);
        let text = many.explain();
        assert!(!text.contains("too many for one shard"), "{text}");
        assert!(text.contains("more than the primary has"), "{text}");
        assert!(text.contains("9 masters"), "{text}");
    }

    #[test]
    fn refuses_a_nonsense_opening() {
        let spoilers: [fn(&mut Opening); 5] = [
            |o| o.users = 0,
            |o| o.poll_every = 0.0,
            |o| o.utilisation = 1.5,
            |o| o.costs.queue_us = f64::NAN,
            |o| o.costs.db_cores = 0.0,
        ];
        for spoil in spoilers {
            let mut plan = opening();
            spoil(&mut plan);
            assert!(plan.validate().is_err(), "{plan:?}");
        }
        assert!(opening().validate().is_ok());
    }

    #[test]
    fn refuses_nonsense() {
        let spoilers: [fn(&mut Plan); 5] = [
            |plan| plan.dau = 0,
            |plan| plan.peak_share = 1.5,
            |plan| plan.peak_hours = 0.0,
            |plan| plan.headroom = 0.5,
            |plan| plan.per_instance = Some(0.0),
        ];
        for spoil in spoilers {
            let mut plan = seed_plan();
            spoil(&mut plan);
            assert!(plan.validate().is_err(), "{plan:?}");
        }
        assert!(seed_plan().validate().is_ok());
        assert_eq!(thousands(1_400_000.0), "1,400,000");
        assert_eq!(thousands(999.0), "999");
    }
}
