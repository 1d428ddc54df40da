//! The campaign-peak scenario: the phases, the origin switches at the phase boundaries, and
//! one run of it against a target (the origin itself, or the proxy in front of it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::client::request_once;
use crate::load::{self, LoadPlan, LoadResult};
use crate::origin::{FailMode, OriginStats};

/// The script: visitors arrive at once, the pages expire under load, then the origin fails,
/// then it comes back.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Phase 1, "campaign goes live": the origin is healthy. Should span at least one max-age.
    pub live: Duration,
    /// Phase 2, "origin fails": the origin fails in `fail_mode`.
    pub down: Duration,
    /// Phase 3, "origin healed" (may be zero).
    pub healed: Duration,
    /// How the origin fails in phase 2.
    pub fail_mode: FailMode,
    /// The visitors; its `target` is replaced by each run's target and its `duration` by the
    /// sum of the phases.
    pub load: LoadPlan,
}

impl Scenario {
    /// The demo's scenario: 300 visitors, 8 s live, 6 s down (503), 3 s healed.
    pub fn campaign() -> Self {
        Scenario {
            live: Duration::from_secs(8),
            down: Duration::from_secs(6),
            healed: Duration::from_secs(3),
            fail_mode: FailMode::Unavailable,
            load: LoadPlan::campaign(SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO),
        }
    }

    /// The length of the whole run (the visitors send nothing after it).
    pub fn duration(&self) -> Duration {
        self.live + self.down + self.healed
    }
}

/// When the phase switches actually happened, in seconds since the run started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseMarks {
    /// The origin was told to fail.
    pub fail_at: f64,
    /// The origin was healed.
    pub heal_at: f64,
    /// The visitors' deadline.
    pub end: f64,
}

/// Everything one run recorded.
#[derive(Debug)]
pub struct RunResult {
    /// What the visitors saw.
    pub load: LoadResult,
    /// What the origin counted.
    pub origin: OriginStats,
    /// When the phases switched.
    pub marks: PhaseMarks,
    /// From the start until the last visitor finished.
    pub wall: Duration,
}

async fn post(origin: SocketAddr, path: &str) -> Result<(), String> {
    let r = request_once(origin, Method::POST, path)
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    if r.status != StatusCode::OK {
        return Err(format!("POST {path}: {}", r.status));
    }
    Ok(())
}

/// Fetches and reads the origin's `/__origin/stats`.
pub async fn origin_stats(origin: SocketAddr) -> Result<OriginStats, String> {
    let r = request_once(origin, Method::GET, "/__origin/stats")
        .await
        .map_err(|e| format!("GET /__origin/stats: {e}"))?;
    if r.status != StatusCode::OK {
        return Err(format!("GET /__origin/stats: {}", r.status));
    }
    OriginStats::parse(std::str::from_utf8(&r.body).map_err(|e| e.to_string())?)
}

/// Plays `scenario` against `target`, switching the origin (at `origin`, reached directly) at
/// the phase boundaries. The origin is reset first, so its counters cover exactly this run.
pub async fn run(
    scenario: &Scenario,
    target: SocketAddr,
    origin: SocketAddr,
) -> Result<RunResult, String> {
    post(origin, "/__origin/reset").await?;
    let t0 = Instant::now();
    let secs = move |at: Instant| (at - t0).as_secs_f64();
    let fail_path = format!("/__origin/fail?mode={}", scenario.fail_mode.as_str());
    let (live, down) = (scenario.live, scenario.down);
    let healed_phase = !scenario.healed.is_zero();
    let controller = tokio::spawn(async move {
        tokio::time::sleep_until((t0 + live).into()).await;
        post(origin, &fail_path).await?;
        let fail_at = secs(Instant::now());
        if !healed_phase {
            return Ok::<_, String>((fail_at, None));
        }
        tokio::time::sleep_until((t0 + live + down).into()).await;
        post(origin, "/__origin/heal").await?;
        Ok((fail_at, Some(secs(Instant::now()))))
    });
    let mut plan = scenario.load.clone();
    plan.target = target;
    plan.duration = scenario.duration();
    let load = load::run(&plan, t0).await;
    let wall = t0.elapsed();
    let (fail_at, heal_at) = controller.await.map_err(|e| e.to_string())??;
    // Without a healed phase the origin is healed only now, which also releases hung requests.
    let heal_at = match heal_at {
        Some(at) => at,
        None => {
            post(origin, "/__origin/heal").await?;
            scenario.duration().as_secs_f64()
        }
    };
    let origin = origin_stats(origin).await?;
    Ok(RunResult {
        load,
        origin,
        marks: PhaseMarks {
            fail_at,
            heal_at,
            end: scenario.duration().as_secs_f64(),
        },
        wall,
    })
}
