//! Command-line flags shared by the binaries: `--name value` pairs and bare `--flag`s, with
//! the scenario's and the origin's settings parsed in one place.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::origin::{FailMode, OriginConfig};
use crate::scenario::Scenario;

/// Parsed `--name value` options and `--flag`s; every one must be consumed by a getter, and
/// [`Args::finish`] reports those that were not.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `args` (without the program name). Names listed in `bare` take no value.
    pub fn parse(args: impl IntoIterator<Item = String>, bare: &[&str]) -> Result<Args, String> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?
                .to_owned();
            if let Some((n, v)) = name.split_once('=') {
                out.values.insert(n.to_owned(), v.to_owned());
            } else if bare.contains(&name.as_str()) {
                out.flags.push(name);
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                out.values.insert(name, v);
            }
        }
        Ok(out)
    }

    /// Whether the bare `--name` was given (and consumes it).
    pub fn flag(&mut self, name: &str) -> bool {
        let had = self.flags.iter().any(|f| f == name);
        self.flags.retain(|f| f != name);
        had
    }

    /// The raw value of `--name`, if given (and consumes it).
    pub fn string(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// The value of `--name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.remove(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
        }
    }

    /// `--name` in (fractional) seconds, or `default`.
    pub fn secs(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        let s: f64 = self.get(name, default.as_secs_f64())?;
        Duration::try_from_secs_f64(s).map_err(|e| format!("--{name}: {e}"))
    }

    /// `--name` in milliseconds, or `default`.
    pub fn millis(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        Ok(Duration::from_millis(
            self.get(name, default.as_millis() as u64)?,
        ))
    }

    /// Fails on any option or flag no getter asked for.
    pub fn finish(self) -> Result<(), String> {
        let unknown: Vec<String> = self
            .values
            .keys()
            .chain(self.flags.iter())
            .map(|k| format!("--{k}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown option(s): {}", unknown.join(" ")))
        }
    }
}

/// Help text for the origin's flags.
pub const ORIGIN_FLAGS: &str = "\
  --delay-ms N      time each page request spends in a worker (100)
  --workers N       concurrent workers, the rest queue (32)
  --max-age N       Cache-Control max-age of the pages, seconds (4)
  --swr N           stale-while-revalidate, seconds (2)
  --sie N           stale-if-error, seconds (300)";

/// Help text for the scenario's flags.
pub const SCENARIO_FLAGS: &str = "\
  --visitors N      concurrent visitors, one keep-alive connection each (300)
  --live S          phase 1, campaign goes live, origin healthy, seconds (8)
  --down S          phase 2, origin failing, seconds (6)
  --healed S        phase 3, origin healed, seconds (3)
  --fail-mode M     how the origin fails: 503, hang or refuse (503)
  --think-ms N      pause between a visitor's answer and its next request (5)
  --timeout-ms N    a request unanswered after this counts as an error (5000)";

/// Reads the origin's flags.
pub fn origin_config(args: &mut Args) -> Result<OriginConfig, String> {
    let d = OriginConfig::default();
    Ok(OriginConfig {
        delay: args.millis("delay-ms", d.delay)?,
        workers: args.get("workers", d.workers)?,
        max_age: args.get("max-age", d.max_age)?,
        swr: args.get("swr", d.swr)?,
        sie: args.get("sie", d.sie)?,
    })
}

/// Reads the scenario's flags.
pub fn scenario(args: &mut Args) -> Result<Scenario, String> {
    let mut s = Scenario::campaign();
    s.load.visitors = args.get("visitors", s.load.visitors)?;
    s.live = args.secs("live", s.live)?;
    s.down = args.secs("down", s.down)?;
    s.healed = args.secs("healed", s.healed)?;
    s.fail_mode = args.get::<FailMode>("fail-mode", s.fail_mode)?;
    s.load.think = args.millis("think-ms", s.load.think)?;
    s.load.request_timeout = args.millis("timeout-ms", s.load.request_timeout)?;
    if s.load.visitors == 0 || s.load.visitors > 10_000 {
        return Err("--visitors must be between 1 and 10000".into());
    }
    if s.duration() > Duration::from_secs(600) {
        return Err("the scenario is limited to 600 s".into());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_values_flags_and_rejects_leftovers() {
        let mut a = Args::parse(
            args("--visitors 50 --live=2.5 --no-proxy --fail-mode hang"),
            &["no-proxy"],
        )
        .unwrap();
        assert!(a.flag("no-proxy"));
        let s = scenario(&mut a).unwrap();
        assert_eq!(s.load.visitors, 50);
        assert_eq!(s.live, Duration::from_millis(2500));
        assert_eq!(s.fail_mode, FailMode::Hang);
        a.finish().unwrap();
        let mut a = Args::parse(args("--workers 4 --bogus 1"), &[]).unwrap();
        assert_eq!(origin_config(&mut a).unwrap().workers, 4);
        assert!(a.finish().unwrap_err().contains("--bogus"));
        assert!(Args::parse(args("--visitors"), &[]).is_err());
        assert!(Args::parse(args("stray"), &[]).is_err());
        let mut a = Args::parse(args("--visitors 0"), &[]).unwrap();
        assert!(scenario(&mut a).is_err());
    }
}
