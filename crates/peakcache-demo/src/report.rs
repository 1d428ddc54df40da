//! Figures from the recorded requests and the origin's counters: percentiles, per-second
//! buckets, the "origin requests per page per expiry" figure, and the side-by-side table.

use std::fmt::Write as _;

use crate::load::Sample;
use crate::scenario::{PhaseMarks, RunResult};

/// The `p`-th percentile (0 < p ≤ 100) of ascending `sorted` values, by the nearest-rank
/// method: the smallest value such that at least `p` % of the values are ≤ it. `None` when
/// there are no values.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Visitor requests that completed in one second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// Answered 2xx/3xx.
    pub served: u64,
    /// Anything else: 4xx/5xx, connection errors, timeouts.
    pub errors: u64,
}

/// Buckets requests by the second in which they completed: `seconds` buckets, the last one
/// also taking anything that completed later.
pub fn per_second(samples: &[Sample], seconds: usize) -> Vec<Second> {
    let mut out = vec![Second::default(); seconds.max(1)];
    let last = out.len() - 1;
    for s in samples {
        let b = &mut out[((s.end_us() / 1_000_000) as usize).min(last)];
        if s.ok() {
            b.served += 1;
        } else {
            b.errors += 1;
        }
    }
    out
}

/// The largest sum of `window` consecutive buckets of `counts` lying entirely inside one of
/// the half-open bucket `ranges`; a range shorter than `window` counts as one window.
pub fn max_in_window(counts: &[u64], window: usize, ranges: &[(usize, usize)]) -> u64 {
    let at = |i: usize| counts.get(i).copied().unwrap_or(0);
    let window = window.max(1);
    let mut best = 0;
    for &(from, to) in ranges {
        if from >= to {
            continue;
        }
        if to - from <= window {
            best = best.max((from..to).map(at).sum());
            continue;
        }
        let mut sum: u64 = (from..from + window).map(at).sum();
        best = best.max(sum);
        for i in from + window..to {
            sum = sum + at(i) - at(i - window);
            best = best.max(sum);
        }
    }
    best
}

/// The bucket ranges in which the origin was healthy for whole seconds: before the failure
/// and after the heal.
pub fn healthy_ranges(marks: &PhaseMarks) -> [(usize, usize); 2] {
    [
        (0, marks.fail_at.floor() as usize),
        (marks.heal_at.ceil() as usize, marks.end.ceil() as usize),
    ]
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Requests the visitors sent.
    pub requests: u64,
    /// Answered 2xx/3xx.
    pub served: u64,
    /// Everything else the visitors saw.
    pub errors: u64,
    /// Errors among requests answered (or failed) while the origin was down.
    pub errors_while_down: u64,
    /// Requests answered (or failed) while the origin was down.
    pub requests_while_down: u64,
    /// Page requests the origin received.
    pub origin_requests: u64,
    /// Page requests the origin received while failing.
    pub origin_requests_while_down: u64,
    /// Visitor requests answered without the origin: `1 - origin / visitor requests`.
    pub hit_ratio: f64,
    /// Latency percentiles over every request (errors and timeouts included), µs.
    pub p50_us: u32,
    /// 99th percentile, µs.
    pub p99_us: u32,
    /// Slowest request, µs.
    pub max_us: u32,
    /// The most requests the origin received for one page within one expiry while healthy
    /// (see [`summarize`]).
    pub max_origin_per_page_per_expiry: u64,
    /// The most requests the origin received for one page within one second, whole run.
    pub max_origin_per_page_per_second: u64,
    /// Visitor requests per second over the run.
    pub requests_per_second: f64,
}

/// Summarizes one run of a scenario whose pages carry `max-age=max_age`.
///
/// "Origin requests per page per expiry" is the largest count of origin requests for one page
/// in any window of `max_age - 1` whole seconds while the origin is healthy: a response's
/// `Date` has one-second resolution, so a conforming cache may count a fresh response as up to
/// a second old and refresh it `max_age - 1` s after it arrived; refreshes that far apart never
/// share such a window, so one refresh per expiry reads as 1.
pub fn summarize(run: &RunResult, max_age: u32) -> Summary {
    let samples = &run.load.samples;
    let mut lat: Vec<u32> = samples.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let (fail_us, heal_us) = (
        (run.marks.fail_at * 1e6) as u64,
        (run.marks.heal_at * 1e6) as u64,
    );
    let down = |s: &&Sample| (fail_us..heal_us).contains(&s.end_us());
    let served = samples.iter().filter(|s| s.ok()).count() as u64;
    let requests = samples.len() as u64;
    let window = (max_age.max(2) - 1) as usize;
    let ranges = healthy_ranges(&run.marks);
    let paths = run.origin.paths.values();
    Summary {
        requests,
        served,
        errors: requests - served,
        errors_while_down: samples.iter().filter(down).filter(|s| !s.ok()).count() as u64,
        requests_while_down: samples.iter().filter(down).count() as u64,
        origin_requests: run.origin.total,
        origin_requests_while_down: run.origin.while_failing,
        hit_ratio: if requests == 0 {
            0.0
        } else {
            (1.0 - run.origin.total as f64 / requests as f64).max(0.0)
        },
        p50_us: percentile(&lat, 50.0).unwrap_or(0),
        p99_us: percentile(&lat, 99.0).unwrap_or(0),
        max_us: lat.last().copied().unwrap_or(0),
        max_origin_per_page_per_expiry: paths
            .clone()
            .map(|p| max_in_window(&p.per_second, window, &ranges))
            .max()
            .unwrap_or(0),
        max_origin_per_page_per_second: paths
            .flat_map(|p| p.per_second.iter().copied())
            .max()
            .unwrap_or(0),
        requests_per_second: requests as f64 / run.marks.end.max(1e-9),
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency for people: `0.4 ms`, `9.5 ms`, `812 ms`, `12.3 s`.
pub fn latency(us: u32) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A ratio as a percentage with two decimals, rounded down so that 99.996 % does not read as
/// a perfect 100.00 %.
pub fn percent(ratio: f64) -> String {
    format!("{:.2} %", (ratio * 10_000.0).floor() / 100.0)
}

/// The table's rows: label, then the direct and the proxied cell.
pub fn rows(direct: Option<&Summary>, proxied: Option<&Summary>) -> Vec<[String; 3]> {
    type Cell = fn(&Summary) -> String;
    let spec: [(&str, Cell, Cell); 12] = [
        (
            "visitor requests",
            |s| thousands(s.requests),
            |s| thousands(s.requests),
        ),
        (
            "requests served",
            |s| thousands(s.served),
            |s| thousands(s.served),
        ),
        (
            "visitor requests per second",
            |s| thousands(s.requests_per_second.round() as u64),
            |s| thousands(s.requests_per_second.round() as u64),
        ),
        (
            "origin requests",
            |s| thousands(s.origin_requests),
            |s| thousands(s.origin_requests),
        ),
        ("hit ratio", |_| "—".into(), |s| percent(s.hit_ratio)),
        ("p50 latency", |s| latency(s.p50_us), |s| latency(s.p50_us)),
        ("p99 latency", |s| latency(s.p99_us), |s| latency(s.p99_us)),
        ("max latency", |s| latency(s.max_us), |s| latency(s.max_us)),
        (
            "errors seen by visitors",
            |s| thousands(s.errors),
            |s| thousands(s.errors),
        ),
        (
            "errors while origin down",
            |s| {
                format!(
                    "{} of {}",
                    thousands(s.errors_while_down),
                    thousands(s.requests_while_down)
                )
            },
            |s| {
                format!(
                    "{} of {}",
                    thousands(s.errors_while_down),
                    thousands(s.requests_while_down)
                )
            },
        ),
        (
            "origin requests while down",
            |s| thousands(s.origin_requests_while_down),
            |s| thousands(s.origin_requests_while_down),
        ),
        (
            "origin requests per page per expiry",
            |s| thousands(s.max_origin_per_page_per_expiry),
            |s| format!("≤ {}", thousands(s.max_origin_per_page_per_expiry)),
        ),
    ];
    spec.iter()
        .map(|(label, d, p)| {
            [
                label.to_string(),
                direct.map(d).unwrap_or_else(|| "skipped".into()),
                proxied.map(p).unwrap_or_else(|| "skipped".into()),
            ]
        })
        .collect()
}

const HEADERS: [&str; 3] = ["", "direct to origin", "through peakcache"];

/// The side-by-side table as aligned plain text.
pub fn text_table(direct: Option<&Summary>, proxied: Option<&Summary>) -> String {
    let rows = rows(direct, proxied);
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([HEADERS[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    let pad = |s: &str, w: usize| " ".repeat(w.saturating_sub(s.chars().count()));
    let _ = writeln!(
        out,
        "{}   {}{}   {}{}",
        " ".repeat(w0),
        pad(HEADERS[1], w1),
        HEADERS[1],
        pad(HEADERS[2], w2),
        HEADERS[2]
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{}{}   {}{}   {}{}",
            r[0],
            pad(&r[0], w0),
            pad(&r[1], w1),
            r[1],
            pad(&r[2], w2),
            r[2]
        );
    }
    out
}

/// The side-by-side table as Markdown.
pub fn markdown_table(direct: Option<&Summary>, proxied: Option<&Summary>) -> String {
    let mut out = String::from("| | direct to origin | through peakcache |\n|---|---:|---:|\n");
    for r in rows(direct, proxied) {
        let _ = writeln!(out, "| {} | {} | {} |", r[0], r[1], r[2]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
        // A slow tail of 2 % shows in p99 but not in p50.
        let mut tail = vec![1u32; 98];
        tail.extend([1000, 1000]);
        assert_eq!(percentile(&tail, 50.0), Some(1));
        assert_eq!(percentile(&tail, 99.0), Some(1000));
    }

    fn sample(start_us: u32, latency_us: u32, status: u16) -> Sample {
        Sample {
            start_us,
            latency_us,
            status,
            page: 1,
        }
    }

    #[test]
    fn buckets_by_completion_second() {
        let samples = [
            sample(0, 10, 200),
            sample(999_000, 999, 200),       // ends at 0.999999 s: bucket 0
            sample(999_000, 1_000, 503),     // ends at exactly 1 s: bucket 1
            sample(1_500_000, 600_000, 0),   // ends at 2.1 s: bucket 2
            sample(2_000_000, 9_000_000, 1), // ends at 11 s: clamped into the last bucket
        ];
        let b = per_second(&samples, 3);
        assert_eq!(
            b,
            vec![
                Second {
                    served: 2,
                    errors: 0
                },
                Second {
                    served: 0,
                    errors: 1
                },
                Second {
                    served: 0,
                    errors: 2
                },
            ]
        );
        assert_eq!(per_second(&[], 0), vec![Second::default()]);
    }

    #[test]
    fn windows_stay_inside_their_ranges() {
        let c = [1, 0, 0, 1, 5, 5, 0, 1, 1, 1];
        assert_eq!(max_in_window(&c, 3, &[(0, 4)]), 1);
        assert_eq!(max_in_window(&c, 3, &[(0, 10)]), 11);
        assert_eq!(max_in_window(&c, 3, &[(0, 4), (6, 10)]), 3);
        assert_eq!(max_in_window(&c, 20, &[(6, 12)]), 3);
        assert_eq!(max_in_window(&c, 0, &[(4, 6)]), 5);
        assert_eq!(max_in_window(&c, 3, &[(5, 5)]), 0);
    }

    #[test]
    fn healthy_ranges_exclude_partial_seconds() {
        let m = PhaseMarks {
            fail_at: 8.002,
            heal_at: 14.003,
            end: 17.0,
        };
        assert_eq!(healthy_ranges(&m), [(0, 8), (15, 17)]);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(percent(0.999_95), "99.99 %");
        assert_eq!(percent(1.0), "100.00 %");
        assert_eq!(percent(0.5), "50.00 %");
        assert_eq!(latency(400), "0.4 ms");
        assert_eq!(latency(12_400), "12 ms");
        assert_eq!(latency(812_000), "812 ms");
        assert_eq!(latency(12_300_000), "12.3 s");
    }

    #[test]
    fn tables_name_skipped_runs() {
        let t = text_table(None, None);
        assert!(t.contains("direct to origin") && t.contains("skipped"));
        assert_eq!(markdown_table(None, None).lines().count(), 2 + 12);
    }
}
