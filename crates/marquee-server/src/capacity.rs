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
