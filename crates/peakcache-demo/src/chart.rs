//! The demo's chart: the two runs' per-second series laid out with [`crate::svg`].

use crate::origin::OriginConfig;
use crate::report;
use crate::scenario::{RunResult, Scenario};
use crate::svg::{Band, Chart, Marker, Panel, Series};

const DIRECT: &str = "#d95f02";
const PEAKCACHE: &str = "#1b7fbd";

fn seconds(run: &RunResult) -> usize {
    run.wall.as_secs_f64().max(run.marks.end).ceil() as usize
}

/// Builds the chart of a direct run and (if there was one) a run through peakcache.
pub fn build(
    scenario: &Scenario,
    origin: &OriginConfig,
    direct: Option<&RunResult>,
    proxied: Option<&RunResult>,
) -> Chart {
    let runs: Vec<(&str, &str, &str, &RunResult)> = [
        direct.map(|r| ("direct", "direct to origin", DIRECT, r)),
        proxied.map(|r| ("peakcache", "through peakcache", PEAKCACHE, r)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let x_max = runs.iter().map(|r| seconds(r.3)).max().unwrap_or(1) as f64;
    let mut visitors = Vec::new();
    let mut errors = Vec::new();
    let mut origin_series = Vec::new();
    for &(id, label, color, run) in &runs {
        let buckets = report::per_second(&run.load.samples, seconds(run));
        visitors.push(Series {
            id: format!("visitors-{id}"),
            label: format!("answered, {label}"),
            color: color.into(),
            dashed: false,
            values: buckets.iter().map(|b| b.served as f64).collect(),
        });
        errors.push(Series {
            id: format!("errors-{id}"),
            label: format!("errors, {label}"),
            color: color.into(),
            dashed: true,
            values: buckets.iter().map(|b| b.errors as f64).collect(),
        });
        origin_series.push(Series {
            id: format!("origin-{id}"),
            label: format!("origin requests, {label}"),
            color: color.into(),
            dashed: false,
            values: run.origin.per_second.iter().map(|&n| n as f64).collect(),
        });
    }
    visitors.extend(errors);
    let marks = runs.first().map(|r| r.3.marks);
    let (fail_at, heal_at) = marks.map_or((scenario.live.as_secs_f64(), 0.0), |m| {
        (m.fail_at, m.heal_at)
    });
    Chart {
        title: "A campaign peak, with and without peakcache".into(),
        subtitle: format!(
            "{} visitors on {} pages, closed loop; origin {} ms a page, {} workers, max-age={} swr={} sie={}; log scale",
            scenario.load.visitors,
            scenario.load.page_weights.len(),
            origin.delay.as_millis(),
            origin.workers,
            origin.max_age,
            origin.swr,
            origin.sie
        ),
        x_label: "seconds since the campaign went live".into(),
        x_max,
        bands: vec![Band {
            from: fail_at,
            to: heal_at.max(fail_at),
            label: format!("origin down ({})", scenario.fail_mode),
        }],
        markers: vec![
            Marker { at: 0.0, label: "campaign goes live".into() },
            Marker { at: heal_at, label: "origin healed".into() },
        ],
        panels: vec![
            Panel {
                title: "Visitors: requests answered and errors per second".into(),
                y_label: "requests/s".into(),
                series: visitors,
            },
            Panel {
                title: "Origin: requests received per second".into(),
                y_label: "requests/s".into(),
                series: origin_series,
            },
        ],
    }
}
