//! Command-line flags shared by the binaries (clap): the origin's and the scenario's settings,
//! each with its default taken from [`OriginConfig::default`] and [`Scenario::campaign`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::origin::{FailMode, OriginConfig};
use crate::scenario::Scenario;

/// The longest scenario a run may play.
pub const MAX_SCENARIO: Duration = Duration::from_secs(600);

/// A span given in (fractional) seconds: `8`, `2.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
        Duration::try_from_secs_f64(secs)
            .map(Seconds)
            .map_err(|e| format!("{e}"))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A span given in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse()
            .map(|ms| Millis(Duration::from_millis(ms)))
            .map_err(|e| format!("{e}"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_millis())
    }
}

/// The origin's flags (`demo-origin` and `demo`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Origin")]
pub struct OriginArgs {
    /// Time each page request spends in a worker, in milliseconds
    #[arg(long = "delay-ms", value_name = "N", default_value_t = Millis(OriginConfig::default().delay))]
    pub delay: Millis,
    /// Concurrent workers; the rest queue
    #[arg(long, value_name = "N", default_value_t = OriginConfig::default().workers)]
    pub workers: usize,
    /// Cache-Control max-age of the pages, in seconds
    #[arg(long, value_name = "N", default_value_t = OriginConfig::default().max_age)]
    pub max_age: u32,
    /// stale-while-revalidate of the pages, in seconds
    #[arg(long, value_name = "N", default_value_t = OriginConfig::default().swr)]
    pub swr: u32,
    /// stale-if-error of the pages, in seconds
    #[arg(long, value_name = "N", default_value_t = OriginConfig::default().sie)]
    pub sie: u32,
}

impl OriginArgs {
    /// The origin's configuration these flags describe.
    pub fn config(&self) -> OriginConfig {
        OriginConfig {
            delay: self.delay.0,
            workers: self.workers,
            max_age: self.max_age,
            swr: self.swr,
            sie: self.sie,
        }
    }
}

/// The scenario's flags (`demo-load` and `demo`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Scenario")]
pub struct ScenarioArgs {
    /// Concurrent visitors, one keep-alive connection each (1 to 10000)
    #[arg(
        long,
        value_name = "N",
        default_value_t = Scenario::campaign().load.visitors,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
    )]
    pub visitors: usize,
    /// Phase 1, the campaign goes live with the origin healthy, in seconds
    #[arg(long, value_name = "S", default_value_t = Seconds(Scenario::campaign().live))]
    pub live: Seconds,
    /// Phase 2, the origin failing, in seconds
    #[arg(long, value_name = "S", default_value_t = Seconds(Scenario::campaign().down))]
    pub down: Seconds,
    /// Phase 3, the origin healed, in seconds
    #[arg(long, value_name = "S", default_value_t = Seconds(Scenario::campaign().healed))]
    pub healed: Seconds,
    /// How the origin fails: 503, hang or refuse
    #[arg(long, value_name = "M", default_value_t = Scenario::campaign().fail_mode)]
    pub fail_mode: FailMode,
    /// Pause between a visitor's answer and its next request, in milliseconds
    #[arg(long = "think-ms", value_name = "N", default_value_t = Millis(Scenario::campaign().load.think))]
    pub think: Millis,
    /// A request unanswered after this many milliseconds counts as an error
    #[arg(long = "timeout-ms", value_name = "N", default_value_t = Millis(Scenario::campaign().load.request_timeout))]
    pub timeout: Millis,
}

impl ScenarioArgs {
    /// The scenario these flags describe; longer than [`MAX_SCENARIO`] in all is an error.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let mut s = Scenario::campaign();
        s.load.visitors = self.visitors;
        s.live = self.live.0;
        s.down = self.down.0;
        s.healed = self.healed.0;
        s.fail_mode = self.fail_mode;
        s.load.think = self.think.0;
        s.load.request_timeout = self.timeout.0;
        let total = s
            .live
            .checked_add(s.down)
            .and_then(|d| d.checked_add(s.healed));
        match total {
            Some(t) if t <= MAX_SCENARIO => Ok(s),
            _ => Err(format!(
                "--live + --down + --healed is limited to {} s",
                MAX_SCENARIO.as_secs()
            )),
        }
    }
}

/// Reports `msg` as a usage error of `T`'s command, the way clap reports its own (with the
/// usage line), and exits with status 2.
pub fn usage_error<T: CommandFactory>(msg: &str) -> ! {
    T::command().error(ErrorKind::ValueValidation, msg).exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The flags of the `demo` binary that these tests need.
    #[derive(Debug, Parser)]
    struct Both {
        #[command(flatten)]
        origin: OriginArgs,
        #[command(flatten)]
        scenario: ScenarioArgs,
        #[arg(long)]
        no_proxy: bool,
    }

    fn parse(line: &str) -> Result<Both, clap::Error> {
        Both::try_parse_from(std::iter::once("demo").chain(line.split_whitespace()))
    }

    #[test]
    fn parses_values_flags_and_both_spellings() {
        let b = parse("--visitors 50 --live=2.5 --no-proxy --fail-mode hang --workers 4").unwrap();
        assert!(b.no_proxy);
        let s = b.scenario.scenario().unwrap();
        assert_eq!(s.load.visitors, 50);
        assert_eq!(s.live, Duration::from_millis(2500));
        assert_eq!(s.fail_mode, FailMode::Hang);
        assert_eq!(b.origin.config().workers, 4);
        let b = parse("--think-ms 7 --timeout-ms 900 --delay-ms 20").unwrap();
        let s = b.scenario.scenario().unwrap();
        assert_eq!(s.load.think, Duration::from_millis(7));
        assert_eq!(s.load.request_timeout, Duration::from_millis(900));
        assert_eq!(b.origin.config().delay, Duration::from_millis(20));
    }

    #[test]
    fn no_flags_is_the_campaign_and_the_default_origin() {
        let b = parse("").unwrap();
        let (s, c) = (Scenario::campaign(), b.scenario.scenario().unwrap());
        assert_eq!(
            (c.live, c.down, c.healed, c.fail_mode),
            (s.live, s.down, s.healed, s.fail_mode)
        );
        assert_eq!(
            (c.load.visitors, c.load.think, c.load.request_timeout),
            (s.load.visitors, s.load.think, s.load.request_timeout)
        );
        assert_eq!(b.origin.config(), OriginConfig::default());
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for line in [
            "--workers 4 --bogus 1",
            "--visitors",
            "stray",
            "--visitors 0",
            "--visitors 10001",
            "--live -1",
            "--live soon",
            "--fail-mode melt",
            "--delay-ms 1.5",
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{line}: {e}");
        }
        let e = parse("--fail-mode melt").unwrap_err().to_string();
        assert!(e.contains("503, hang, refuse"), "{e}");
    }

    #[test]
    fn a_scenario_longer_than_the_limit_is_an_error_even_when_the_sum_overflows() {
        let b = parse("--live 300 --down 300 --healed 0").unwrap();
        assert!(b.scenario.scenario().is_ok());
        for line in [
            "--live 300 --down 300 --healed 0.5",
            "--live 1e19 --down 1e19",
        ] {
            let e = parse(line).unwrap().scenario.scenario().unwrap_err();
            assert!(e.contains("600 s"), "{line}: {e}");
        }
    }
}
