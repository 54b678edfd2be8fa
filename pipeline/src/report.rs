//! The run's report: the figures of WORKLOAD.md as JSON, as a table for
//! people, and as an SVG timeline.
//!
//! [`Report`] holds plain numbers; whoever runs the pipeline fills it in from
//! its counters, the runtime's task counts, the pools' metrics and
//! `/proc/self`. [`LatencyRecorder`] keeps the latency histogram, and a
//! per-second window of it for the timeline. Nothing here reads a clock or
//! touches a file except [`render_svg`] (blocking: call it through
//! `tally::unblock`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Everything a run reports. Serializes to the JSON of `--report FILE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Events admitted to the pipeline.
    pub admitted: u64,
    /// Events whose row is committed (or was already there) and whose audit
    /// line is written.
    pub processed: u64,
    /// Events that failed, dead-lettered with their reason.
    pub failed: u64,
    /// Events cut by a shutdown before their outcome was known.
    pub interrupted: u64,
    /// Rows that did not parse; they never reach admission.
    pub rejected: u64,
    /// Rows in `market_events` whose event_id was admitted in this run.
    pub db_rows: u64,
    /// Audit lines written in this run.
    pub audit_lines: u64,
    /// Lines written to the dead-letter file in this run.
    pub dead_letters: u64,
    /// From the first admission to the last outcome, in seconds.
    pub duration_s: f64,
    /// Processed events per second over `duration_s`.
    pub throughput_eps: f64,
    /// From the last outcome until tasks were at baseline and both pools at
    /// their warm size; `None` if that was not seen.
    pub seconds_to_settle: Option<f64>,
    /// Latency to the outcome.
    pub latency_ms: Latency,
    /// Live tasks, from the runtime's counters.
    pub tasks: Tasks,
    /// The Postgres pool and server.
    pub pg: PgFigures,
    /// The HTTP pool.
    pub http: PoolFigures,
    /// Open file descriptors of the process.
    pub fds: Gauge,
    /// Resident memory of the process, in bytes.
    pub rss_bytes: Gauge,
    /// One point per second of the run.
    pub series: Vec<SeriesPoint>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Live task counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    /// Warm and idle, before the first event.
    pub baseline: u64,
    /// The most seen at once.
    pub peak: u64,
    /// Once settled after the last outcome.
    #[serde(rename = "final")]
    pub final_: u64,
    /// From the last outcome until back at baseline; `None` if never.
    pub seconds_to_baseline: Option<f64>,
}

/// A quantity sampled before, during and after the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauge {
    /// Warm and idle, before the first event.
    pub baseline: u64,
    /// The most seen.
    pub peak: u64,
    /// Once settled after the last outcome.
    #[serde(rename = "final")]
    pub final_: u64,
}

/// A pool's figures at the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolFigures {
    /// Connections alive.
    pub size: u64,
    /// Connections idle.
    pub idle: u64,
    /// Connections leased out.
    pub in_use: u64,
    /// The most acquires waiting at once.
    pub waiters_peak: u64,
    /// 99th percentile wait to acquire, in milliseconds.
    pub acquire_p99_ms: f64,
    /// Leases dropped without an explicit end and reclaimed by the pool.
    pub abandoned: u64,
    /// Broken connections discarded.
    pub discarded: u64,
}

impl PoolFigures {
    /// The figures of a pool's [`Metrics`](tally::pool::Metrics); `discarded`
    /// counts the broken connections (`discarded_broken`).
    pub fn from_metrics(metrics: &tally::pool::Metrics) -> PoolFigures {
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        PoolFigures {
            size: wide(metrics.size),
            idle: wide(metrics.idle),
            in_use: wide(metrics.in_use),
            waiters_peak: metrics.waiters_peak,
            acquire_p99_ms: duration_ms(metrics.acquire_p99),
            abandoned: metrics.abandoned,
            discarded: metrics.discarded_broken,
        }
    }
}

/// The Postgres figures: the pool's, and what `pg_stat_activity` showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PgFigures {
    /// The longest a connection sat `idle in transaction`, in seconds.
    pub max_idle_in_transaction_s: f64,
    /// After the last event, until every connection was idle; `None` if never.
    pub seconds_to_all_idle: Option<f64>,
    /// The pool's figures.
    #[serde(flatten)]
    pub pool: PoolFigures,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Seconds since the first admission, at the end of this second.
    pub t: f64,
    /// Live tasks.
    pub tasks: u64,
    /// Events admitted and without an outcome yet.
    pub in_flight: u64,
    /// Postgres connections leased out.
    pub pg_in_use: u64,
    /// HTTP connections leased out.
    pub http_in_use: u64,
    /// 99th percentile latency of the outcomes of this second, in ms.
    pub p99_ms: f64,
    /// Events processed during this second.
    pub processed: u64,
}

impl Report {
    /// The report as pretty-printed JSON.
    ///
    /// # Errors
    ///
    /// Only if serde_json fails, which plain numbers do not make it do (a
    /// non-finite float is written as `null`).
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Reads a report back from its JSON.
    ///
    /// # Errors
    ///
    /// If `json` is not a report.
    pub fn from_json(json: &str) -> Result<Report, ReportError> {
        Ok(serde_json::from_str(json)?)
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// JSON serialization failed.
    #[error("cannot serialize the report: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the timeline failed.
    #[error("cannot draw the timeline: {0}")]
    Draw(String),
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The longest latency the histogram tells apart: one hour; longer ones are
/// recorded as one hour.
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// Latencies in an HDR histogram (microseconds, three significant digits),
/// for the whole run and for the current second.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    total: Histogram<u64>,
    window: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> LatencyRecorder {
        let histogram = || {
            // Constant, valid bounds: 1 us to one hour, three digits.
            Histogram::new_with_bounds(1, duration_micros(MAX_LATENCY), 3)
                .expect("1 us to 1 h at 3 significant digits are valid bounds")
        };
        LatencyRecorder {
            total: histogram(),
            window: histogram(),
        }
    }

    /// Records one latency (saturating at [`MAX_LATENCY`]).
    pub fn record(&mut self, latency: Duration) {
        let micros = duration_micros(latency);
        self.total.saturating_record(micros);
        self.window.saturating_record(micros);
    }

    /// Latencies recorded in all.
    pub fn count(&self) -> u64 {
        self.total.len()
    }

    /// Latencies recorded since the window was last taken.
    pub fn window_count(&self) -> u64 {
        self.window.len()
    }

    /// The run's percentiles (all 0 when nothing was recorded).
    pub fn summary(&self) -> Latency {
        latency_of(&self.total)
    }

    /// The current window's 99th percentile in ms (0 if it is empty), and a
    /// fresh window.
    pub fn take_window_p99_ms(&mut self) -> f64 {
        let p99 = micros_ms(self.window.value_at_quantile(0.99));
        self.window.reset();
        p99
    }

    /// Adds everything `other` recorded (both its run and its window), so
    /// that workers can keep recorders of their own.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides, so adding cannot fail; saturate anyway.
        for (into, from) in [
            (&mut self.total, &other.total),
            (&mut self.window, &other.window),
        ] {
            if into.add(from).is_err() {
                for value in from.iter_recorded() {
                    into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
                }
            }
        }
    }
}

fn latency_of(h: &Histogram<u64>) -> Latency {
    Latency {
        p50: micros_ms(h.value_at_quantile(0.50)),
        p90: micros_ms(h.value_at_quantile(0.90)),
        p99: micros_ms(h.value_at_quantile(0.99)),
        max: micros_ms(h.max()),
    }
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn micros_ms(micros: u64) -> f64 {
    // Exact for any latency below 2^53 us (285 years).
    micros as f64 / 1000.0
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The report as an aligned text table, as printed at the end of a run.
pub fn render_table(report: &Report) -> String {
    let r = report;
    // A figure that was never reached reads "not reached", without a unit.
    let opt_s = |v: Option<f64>, unit: &'static str| match v {
        Some(s) => (format!("{s:.3}"), unit),
        None => ("not reached".to_owned(), ""),
    };
    let (baseline_s, baseline_unit) =
        opt_s(r.tasks.seconds_to_baseline, "s after the last outcome");
    let (idle_s, idle_unit) = opt_s(r.pg.seconds_to_all_idle, "s after the last event");
    let (settle_s, settle_unit) = opt_s(r.seconds_to_settle, "s after the last outcome");
    let (min_eps, max_eps) = per_second_range(&r.series);
    let summary = [
        ["admitted", &r.admitted.to_string(), "events"],
        ["processed", &r.processed.to_string(), "events"],
        ["failed", &r.failed.to_string(), "events"],
        ["interrupted", &r.interrupted.to_string(), "events"],
        ["rejected", &r.rejected.to_string(), "rows"],
        ["db_rows", &r.db_rows.to_string(), "rows of this run"],
        ["audit_lines", &r.audit_lines.to_string(), "lines"],
        ["dead_letters", &r.dead_letters.to_string(), "lines"],
        ["duration", &format!("{:.3}", r.duration_s), "s"],
        [
            "throughput",
            &format!("{:.1}", r.throughput_eps),
            "events/s",
        ],
        [
            "throughput per second",
            &format!("{min_eps:.0} .. {max_eps:.0}"),
            "events/s (min .. max)",
        ],
        ["latency p50", &format!("{:.3}", r.latency_ms.p50), "ms"],
        ["latency p90", &format!("{:.3}", r.latency_ms.p90), "ms"],
        ["latency p99", &format!("{:.3}", r.latency_ms.p99), "ms"],
        ["latency max", &format!("{:.3}", r.latency_ms.max), "ms"],
        ["tasks back to baseline", &baseline_s, baseline_unit],
        [
            "pg max idle in transaction",
            &format!("{:.3}", r.pg.max_idle_in_transaction_s),
            "s",
        ],
        ["pg all idle", &idle_s, idle_unit],
        ["seconds to settle", &settle_s, settle_unit],
    ];
    let rows: Vec<Vec<String>> = std::iter::once(vec![
        "figure".to_owned(),
        "value".to_owned(),
        "unit".to_owned(),
    ])
    .chain(
        summary
            .iter()
            .map(|row| row.iter().map(|s| (*s).to_owned()).collect()),
    )
    .collect();
    let mut out = grid(&rows);

    out.push('\n');
    let pool_row = |name: &str, p: &PoolFigures| {
        vec![
            name.to_owned(),
            p.size.to_string(),
            p.idle.to_string(),
            p.in_use.to_string(),
            p.waiters_peak.to_string(),
            format!("{:.3}", p.acquire_p99_ms),
            p.abandoned.to_string(),
            p.discarded.to_string(),
        ]
    };
    out.push_str(&grid(&[
        [
            "pool",
            "size",
            "idle",
            "in use",
            "waiters peak",
            "acquire p99 ms",
            "abandoned",
            "discarded",
        ]
        .map(str::to_owned)
        .to_vec(),
        pool_row("postgres", &r.pg.pool),
        pool_row("http", &r.http),
    ]));

    out.push('\n');
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    out.push_str(&grid(&[
        ["resource", "baseline", "peak", "final"]
            .map(str::to_owned)
            .to_vec(),
        vec![
            "live tasks".to_owned(),
            r.tasks.baseline.to_string(),
            r.tasks.peak.to_string(),
            r.tasks.final_.to_string(),
        ],
        vec![
            "open fds".to_owned(),
            r.fds.baseline.to_string(),
            r.fds.peak.to_string(),
            r.fds.final_.to_string(),
        ],
        vec![
            "resident memory".to_owned(),
            mib(r.rss_bytes.baseline),
            mib(r.rss_bytes.peak),
            mib(r.rss_bytes.final_),
        ],
    ]));
    out
}

/// The lowest and highest rate of processed events over the seconds of the
/// series; a part second (the last, often) counts at its rate.
fn per_second_range(series: &[SeriesPoint]) -> (f64, f64) {
    let mut previous = 0.0;
    let mut range: Option<(f64, f64)> = None;
    for point in series {
        let span = point.t - previous;
        previous = point.t;
        if span <= 0.0 {
            continue;
        }
        let rate = point.processed as f64 / span;
        range = Some(range.map_or((rate, rate), |(lo, hi)| (lo.min(rate), hi.max(rate))));
    }
    range.unwrap_or((0.0, 0.0))
}

/// Rows as aligned columns: the first column left-aligned, the others
/// right-aligned, two spaces apart, a rule under the first row.
fn grid(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let width = widths[c];
            // Writing to a String cannot fail.
            let _ = if c == 0 {
                write!(line, "{cell:<width$}")
            } else if c + 1 == row.len() && columns == 3 && row.len() == 3 {
                // The unit column of the summary reads better left-aligned.
                write!(line, "  {cell}")
            } else {
                write!(line, "  {cell:>width$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// The timeline as SVG text: live tasks, in-flight events and the pools'
/// connections in use per second above, p99 latency per second below.
///
/// # Errors
///
/// [`ReportError::Draw`] if plotters fails.
pub fn render_svg_string(report: &Report) -> Result<String, ReportError> {
    let mut svg = String::new();
    draw_timeline(report, &mut svg).map_err(ReportError::Draw)?;
    Ok(svg)
}

/// Writes the timeline ([`render_svg_string`]) to `path`. Blocking.
///
/// # Errors
///
/// [`ReportError::Draw`] if drawing fails, [`ReportError::Write`] if the file
/// cannot be written.
pub fn render_svg(report: &Report, path: &Path) -> Result<(), ReportError> {
    let svg = render_svg_string(report)?;
    std::fs::write(path, svg).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 720;
const UPPER: u32 = 440;

/// Picks one count of a point of the series.
type CountOf = fn(&SeriesPoint) -> u64;

fn draw_timeline(report: &Report, svg: &mut String) -> Result<(), String> {
    let series = &report.series;
    let t_max = series.iter().map(|p| p.t).fold(1.0_f64, f64::max);
    let counts_max = series
        .iter()
        .flat_map(|p| [p.tasks, p.in_flight, p.pg_in_use, p.http_in_use])
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let p99_max = series.iter().map(|p| p.p99_ms).fold(1.0_f64, f64::max);
    let e = |e: &dyn std::fmt::Display| e.to_string();

    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (upper, lower) = root.split_vertically(UPPER);

    let mut counts = ChartBuilder::on(&upper)
        .caption(
            "live tasks, in-flight events, pool connections in use",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, 0.0..counts_max * 1.05)
        .map_err(|x| e(&x))?;
    counts
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("count")
        .draw()
        .map_err(|x| e(&x))?;
    let lines: [(&str, RGBColor, CountOf); 4] = [
        ("live tasks", BLUE, |p| p.tasks),
        ("in-flight events", RED, |p| p.in_flight),
        ("postgres in use", GREEN, |p| p.pg_in_use),
        ("http in use", MAGENTA, |p| p.http_in_use),
    ];
    for (label, color, value) in lines {
        counts
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.t, value(p) as f64)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    counts
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;

    let mut latency = ChartBuilder::on(&lower)
        .caption("p99 latency per second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, 0.0..p99_max * 1.05)
        .map_err(|x| e(&x))?;
    latency
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()
        .map_err(|x| e(&x))?;
    latency
        .draw_series(LineSeries::new(
            series.iter().map(|p| (p.t, p.p99_ms)),
            BLACK.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn sample() -> Report {
        Report {
            admitted: 5031,
            processed: 5020,
            failed: 7,
            interrupted: 4,
            rejected: 2,
            db_rows: 5023,
            audit_lines: 5020,
            dead_letters: 13,
            duration_s: 2.5,
            throughput_eps: 2008.0,
            seconds_to_settle: Some(0.25),
            latency_ms: Latency {
                p50: 0.5,
                p90: 0.9,
                p99: 0.99,
                max: 1.0,
            },
            tasks: Tasks {
                baseline: 9,
                peak: 520,
                final_: 9,
                seconds_to_baseline: Some(0.125),
            },
            pg: PgFigures {
                max_idle_in_transaction_s: 0.002,
                seconds_to_all_idle: None,
                pool: PoolFigures {
                    size: 8,
                    idle: 8,
                    in_use: 0,
                    waiters_peak: 31,
                    acquire_p99_ms: 1.5,
                    abandoned: 0,
                    discarded: 1,
                },
            },
            http: PoolFigures {
                size: 16,
                idle: 15,
                in_use: 1,
                waiters_peak: 3,
                acquire_p99_ms: 0.25,
                abandoned: 2,
                discarded: 5,
            },
            fds: Gauge {
                baseline: 21,
                peak: 60,
                final_: 21,
            },
            rss_bytes: Gauge {
                baseline: 10 * 1024 * 1024,
                peak: 24 * 1024 * 1024,
                final_: 11 * 1024 * 1024,
            },
            series: vec![
                SeriesPoint {
                    t: 1.0,
                    tasks: 300,
                    in_flight: 280,
                    pg_in_use: 8,
                    http_in_use: 12,
                    p99_ms: 0.8,
                    processed: 1990,
                },
                SeriesPoint {
                    t: 2.0,
                    tasks: 520,
                    in_flight: 500,
                    pg_in_use: 8,
                    http_in_use: 16,
                    p99_ms: 1.2,
                    processed: 2050,
                },
                SeriesPoint {
                    t: 2.5,
                    tasks: 9,
                    in_flight: 0,
                    pg_in_use: 0,
                    http_in_use: 0,
                    p99_ms: 0.0,
                    processed: 980,
                },
            ],
        }
    }

    #[test]
    fn the_json_has_every_key_of_the_issue() {
        let report = sample();
        let json = report.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let expect = |path: &str, want: serde_json::Value| {
            let got = v.pointer(path).unwrap_or_else(|| panic!("missing {path}"));
            assert_eq!(*got, want, "{path}");
        };
        use serde_json::json;
        for (key, want) in [
            ("admitted", json!(5031)),
            ("processed", json!(5020)),
            ("failed", json!(7)),
            ("interrupted", json!(4)),
            ("rejected", json!(2)),
            ("db_rows", json!(5023)),
            ("audit_lines", json!(5020)),
            ("dead_letters", json!(13)),
            ("duration_s", json!(2.5)),
            ("throughput_eps", json!(2008.0)),
            ("seconds_to_settle", json!(0.25)),
            ("latency_ms/p50", json!(0.5)),
            ("latency_ms/p90", json!(0.9)),
            ("latency_ms/p99", json!(0.99)),
            ("latency_ms/max", json!(1.0)),
            ("tasks/baseline", json!(9)),
            ("tasks/peak", json!(520)),
            ("tasks/final", json!(9)),
            ("tasks/seconds_to_baseline", json!(0.125)),
            ("pg/max_idle_in_transaction_s", json!(0.002)),
            ("pg/seconds_to_all_idle", json!(null)),
            ("pg/abandoned", json!(0)),
            ("pg/discarded", json!(1)),
            ("pg/size", json!(8)),
            ("pg/idle", json!(8)),
            ("pg/in_use", json!(0)),
            ("pg/waiters_peak", json!(31)),
            ("pg/acquire_p99_ms", json!(1.5)),
            ("http/abandoned", json!(2)),
            ("http/discarded", json!(5)),
            ("http/size", json!(16)),
            ("http/idle", json!(15)),
            ("http/in_use", json!(1)),
            ("http/waiters_peak", json!(3)),
            ("http/acquire_p99_ms", json!(0.25)),
            ("fds/baseline", json!(21)),
            ("fds/peak", json!(60)),
            ("fds/final", json!(21)),
            ("rss_bytes/baseline", json!(10_485_760)),
            ("rss_bytes/peak", json!(25_165_824)),
            ("rss_bytes/final", json!(11_534_336)),
            ("series/1/t", json!(2.0)),
            ("series/1/tasks", json!(520)),
            ("series/1/in_flight", json!(500)),
            ("series/1/pg_in_use", json!(8)),
            ("series/1/http_in_use", json!(16)),
            ("series/1/p99_ms", json!(1.2)),
            ("series/1/processed", json!(2050)),
        ] {
            expect(&format!("/{key}"), want);
        }
        assert_eq!(v["series"].as_array().unwrap().len(), 3);
        // Nothing else at the top level.
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "admitted",
                "audit_lines",
                "db_rows",
                "dead_letters",
                "duration_s",
                "failed",
                "fds",
                "http",
                "interrupted",
                "latency_ms",
                "pg",
                "processed",
                "rejected",
                "rss_bytes",
                "seconds_to_settle",
                "series",
                "tasks",
                "throughput_eps",
            ]
        );
        assert_eq!(Report::from_json(&json).unwrap(), report);
    }

    #[test]
    fn the_table_mentions_every_figure() {
        let table = render_table(&sample());
        for needle in [
            "admitted",
            "processed",
            "failed",
            "interrupted",
            "rejected",
            "db_rows",
            "audit_lines",
            "dead_letters",
            "duration",
            "throughput",
            "throughput per second",
            "1960 .. 2050",
            "latency p50",
            "latency p90",
            "latency p99",
            "latency max",
            "tasks back to baseline",
            "pg max idle in transaction",
            "pg all idle",
            "not reached",
            "seconds to settle",
            "size",
            "idle",
            "in use",
            "waiters peak",
            "acquire p99 ms",
            "abandoned",
            "discarded",
            "postgres",
            "http",
            "live tasks",
            "open fds",
            "resident memory",
            "baseline",
            "peak",
            "final",
            "24.0 MiB",
        ] {
            assert!(table.contains(needle), "{needle:?} missing from\n{table}");
        }
        let expected = "\
figure                             value  unit
------------------------------------------------------------------
admitted                            5031  events
processed                           5020  events
failed                                 7  events
interrupted                            4  events
rejected                               2  rows
db_rows                             5023  rows of this run
audit_lines                         5020  lines
dead_letters                          13  lines
duration                           2.500  s
throughput                        2008.0  events/s
throughput per second       1960 .. 2050  events/s (min .. max)
latency p50                        0.500  ms
latency p90                        0.900  ms
latency p99                        0.990  ms
latency max                        1.000  ms
tasks back to baseline             0.125  s after the last outcome
pg max idle in transaction         0.002  s
pg all idle                  not reached
seconds to settle                  0.250  s after the last outcome

pool      size  idle  in use  waiters peak  acquire p99 ms  abandoned  discarded
--------------------------------------------------------------------------------
postgres     8     8       0            31           1.500          0          1
http        16    15       1             3           0.250          2          5

resource         baseline      peak     final
---------------------------------------------
live tasks              9       520         9
open fds               21        60        21
resident memory  10.0 MiB  24.0 MiB  11.0 MiB
";
        assert_eq!(table, expected);
        // An empty report renders too, with zeros.
        assert!(render_table(&Report::default()).contains(" 0 .. 0  events/s (min .. max)\n"));
    }

    #[test]
    fn the_svg_is_written() {
        let dir = TempDir::new("report-svg");
        let path = dir.path().join("timeline.svg");
        render_svg(&sample(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("p99 latency per second"));
        assert!(svg.contains("in-flight events"));
        // An empty run draws too.
        assert!(render_svg_string(&Report::default())
            .unwrap()
            .contains("<svg"));
        let e = render_svg(&sample(), &dir.path().join("missing/timeline.svg")).unwrap_err();
        assert!(matches!(e, ReportError::Write { .. }));
    }

    #[test]
    fn the_recorder_gives_exact_percentiles() {
        let mut recorder = LatencyRecorder::new();
        assert_eq!(recorder.summary(), Latency::default());
        for us in 1..=1000 {
            recorder.record(Duration::from_micros(us));
        }
        assert_eq!(recorder.count(), 1000);
        assert_eq!(
            recorder.summary(),
            Latency {
                p50: 0.5,
                p90: 0.9,
                p99: 0.99,
                max: 1.0,
            }
        );
        assert_eq!(recorder.take_window_p99_ms(), 0.99);
        assert_eq!(recorder.window_count(), 0);
        assert_eq!(recorder.take_window_p99_ms(), 0.0);
        recorder.record(Duration::from_micros(1500));
        assert_eq!(recorder.take_window_p99_ms(), 1.5);
        assert_eq!(recorder.count(), 1001);

        let mut other = LatencyRecorder::new();
        other.record(Duration::from_secs(7200));
        recorder.merge(&other);
        assert_eq!(recorder.count(), 1002);
        // Saturated at one hour (within the histogram's three digits).
        let max = recorder.summary().max;
        assert!((max - 3_600_000.0).abs() / 3_600_000.0 < 0.001, "{max}");
        assert_eq!(recorder.window_count(), 1);
    }

    #[test]
    fn pool_figures_come_from_pool_metrics() {
        let metrics = tally::pool::Metrics {
            size: 4,
            idle: 3,
            in_use: 1,
            waiters_peak: 9,
            abandoned: 2,
            discarded: 50,
            discarded_broken: 6,
            acquire_p99: Duration::from_micros(1250),
            ..tally::pool::Metrics::default()
        };
        assert_eq!(
            PoolFigures::from_metrics(&metrics),
            PoolFigures {
                size: 4,
                idle: 3,
                in_use: 1,
                waiters_peak: 9,
                acquire_p99_ms: 1.25,
                abandoned: 2,
                discarded: 6,
            }
        );
    }
}
