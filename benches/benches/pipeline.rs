//! The whole pipeline (`tally_pipeline::run::run`) against what `pgbench`
//! reaches with the pipeline's own transaction, on one throwaway cluster
//! ([`Cluster::start`]) and one built-in enrichment server
//! ([`EnrichServer`], no faults), both started at the beginning and stopped
//! at the end.
//!
//! 1. The ceiling: `pgbench -M prepared -n -T 5 -c 8 -j 2` (the pipeline's
//!    eight Postgres connections) with `BEGIN; INSERT INTO market_events ...
//!    ON CONFLICT (event_id) DO NOTHING; COMMIT`, a fresh random event id
//!    each time: as plain statements (three round trips) and between
//!    `\startpipeline` and `\endpipeline` (one, as the pipeline sends it).
//! 2. A replay of the bundled data (`pipeline/data`, four passes) as fast as
//!    the pipeline takes it, on a fresh [`tally::Runtime`] with two workers
//!    and otherwise [`Settings::default`]: its report table, its throughput
//!    and the ratio to each pgbench figure.
//! 3. A spike (200 events/s for 5 s, 2,000 for 10 s, 200 for 5 s): its p99
//!    latency, the seconds until the live tasks are back to their baseline,
//!    the longest `idle in transaction`, and the highest and lowest events
//!    per second of its series.
//!
//! Steps 2 and 3 run three times, interleaved (replay, spike, replay, ...),
//! then a summary gives the medians. `market_events` is emptied before each
//! run, so every run inserts all its rows (a replay of ids already stored
//! only finds conflicts, which commit without writing). Each run's audit log
//! goes to a directory of its own under the temporary directory, removed
//! afterwards.
//!
//! Needs the PostgreSQL server binaries and `pgbench` (found as the harness
//! finds them: `PG_BIN`, `pg_config --bindir`, `PATH`,
//! `/usr/lib/postgresql/*/bin`). Run with:
//!
//! ```text
//! cargo bench -p tally-benches --bench pipeline
//! ```
//!
//! (about two minutes). Without `--bench` (`cargo test --benches`) it only
//! prints a line.

mod common;

use common::{find_pgbench, run_pgbench};
use std::fs;
use std::path::Path;
use std::time::Duration;

use tally::protocols::http1::Url;
use tally::protocols::pg::Config as PgConfig;
use tally_harness::cluster::{Cluster, SUPERUSER};
use tally_harness::enrich::{EnrichConfig, EnrichServer};
use tally_pipeline::report::{render_table, Report, SeriesPoint};
use tally_pipeline::run::{self, Services, Settings, Spike};
use tally_pipeline::store::CREATE_TABLE;

/// How long each pgbench run lasts, in seconds.
const PGBENCH_SECONDS: &str = "5";
/// Replay and spike rounds.
const ROUNDS: usize = 3;
/// Passes over the bundled data in each replay.
const LOOPS: u32 = 4;
/// The runtime's workers.
const WORKERS: usize = 2;

const SPIKE: Spike = Spike {
    baseline_rate: 200.0,
    baseline_secs: 5.0,
    spike_rate: 2000.0,
    spike_secs: 10.0,
};

/// The pipeline's transaction as a pgbench script: statement by statement,
/// or in one pipeline.
fn pgbench_script(pipelined: bool) -> String {
    let (start, end) = if pipelined {
        ("\\startpipeline\n", "\\endpipeline\n")
    } else {
        ("", "")
    };
    format!(
        "\\set id random(1, 1000000000)\n{start}BEGIN;\n\
         INSERT INTO market_events (event_id, symbol, price, volume, ts, enrichment) \
         VALUES ('pgb:' || :id, 'X', 1.0, 1, now(), '{{}}'::jsonb) \
         ON CONFLICT (event_id) DO NOTHING;\n\
         COMMIT;\n{end}"
    )
}

/// Runs pgbench with `script` on eight clients against the cluster; its tps.
fn pgbench(bin: &Path, port: u16, script: &Path) -> Result<f64, String> {
    let stdout = run_pgbench(bin, port, script, &["-c", "8", "-j", "2"], PGBENCH_SECONDS)?;
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| format!("no tps line in pgbench's output:\n{stdout}"))
}

/// pgbench's tps, plain and pipelined.
fn pgbench_ceiling(cluster: &Cluster) -> [f64; 2] {
    let bin = find_pgbench().expect("pgbench (PG_BIN, pg_config --bindir, PATH)");
    [false, true].map(|pipelined| {
        let script = std::env::temp_dir().join(format!(
            "tally-bench-pipeline-{}-{}.sql",
            std::process::id(),
            if pipelined { "pipelined" } else { "plain" }
        ));
        fs::write(&script, pgbench_script(pipelined)).expect("pgbench script");
        let tps = pgbench(&bin, cluster.port(), &script);
        let _ = fs::remove_file(&script);
        tps.unwrap_or_else(|e| panic!("{e}"))
    })
}

/// One pipeline run on a fresh runtime, its audit log in a fresh directory
/// (removed afterwards), on an emptied `market_events`.
fn run_pipeline(
    cluster: &Cluster,
    services: &Services,
    label: &str,
    spike: Option<Spike>,
) -> Report {
    cluster
        .psql_query("TRUNCATE market_events")
        .expect("TRUNCATE market_events");
    let audit_dir = std::env::temp_dir().join(format!(
        "tally-bench-pipeline-{}-{label}",
        std::process::id()
    ));
    let settings = Settings {
        inputs: run::bundled(),
        loops: LOOPS,
        spike,
        audit_dir: audit_dir.clone(),
        ..Settings::default()
    };
    let rt = tally::Runtime::builder()
        .name("bench-pipeline")
        .workers(WORKERS)
        .build()
        .expect("tally runtime");
    let result = rt.block_on(run::run(settings, services.clone()));
    let shutdown = rt.shutdown(Duration::from_secs(2));
    if !shutdown.is_clean() {
        eprintln!("{label}: the runtime left tasks behind:\n{shutdown}");
    }
    let _ = fs::remove_dir_all(&audit_dir);
    let outcome = result.unwrap_or_else(|e| panic!("{label}: {e}"));
    if let Some(e) = &outcome.input_error {
        eprintln!("{label}: the input stopped early: {e}");
    }
    outcome.report
}

/// The lowest and highest events per second over the series (a part second
/// counts at its rate), as the report's table computes them.
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

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "not reached".to_owned(), |s| format!("{s:.3} s"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    // As criterion decides for the other benches: without `--bench` (e.g.
    // `cargo test --benches`) there is nothing to measure.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if !benching {
        println!("pipeline: measured only under `cargo bench` (skipped)");
        return;
    }

    let cluster = Cluster::start().expect("a throwaway cluster");
    cluster
        .psql_query(CREATE_TABLE)
        .expect("CREATE TABLE market_events");
    let server = EnrichServer::start(EnrichConfig::new()).expect("the enrichment server");
    let pg: PgConfig = cluster.url(SUPERUSER).parse().expect("the cluster's URL");
    let enrich = Url::parse(&server.url()).expect("the server's URL");
    let services = Services { pg, enrich };

    let [plain, pipelined] = pgbench_ceiling(&cluster);
    println!("pgbench -M prepared -n -T {PGBENCH_SECONDS} -c 8 -j 2, the pipeline's transaction:");
    println!("  plain (3 round trips):                  {plain:>9.1} tps");
    println!("  \\startpipeline (1 round trip):          {pipelined:>9.1} tps");

    let mut throughputs = Vec::new();
    let mut p99s = Vec::new();
    for round in 1..=ROUNDS {
        let replay = run_pipeline(&cluster, &services, &format!("replay-{round}"), None);
        println!("\nreplay {round} ({LOOPS} passes over the bundled data, as fast as it goes):");
        println!("{}", render_table(&replay));
        println!(
            "throughput {:.1} events/s; / pgbench plain {:.3}, / pgbench pipelined {:.3}",
            replay.throughput_eps,
            replay.throughput_eps / plain,
            replay.throughput_eps / pipelined
        );
        throughputs.push(replay.throughput_eps);

        let spike = run_pipeline(&cluster, &services, &format!("spike-{round}"), Some(SPIKE));
        let (min, max) = per_second_range(&spike.series);
        println!(
            "\nspike {round} (200/s 5 s, 2000/s 10 s, 200/s 5 s): {} processed, {} failed",
            spike.processed, spike.failed
        );
        println!(
            "  latency p99                  {:.3} ms",
            spike.latency_ms.p99
        );
        println!(
            "  tasks back to baseline       {}",
            secs(spike.tasks.seconds_to_baseline)
        );
        println!(
            "  longest idle in transaction  {:.3} s",
            spike.pg.max_idle_in_transaction_s
        );
        println!("  events per second            {min:.0} .. {max:.0} (min .. max)");
        p99s.push(spike.latency_ms.p99);
    }

    let throughput = median(&throughputs);
    let p99 = median(&p99s);
    let list = |values: &[f64], digits: usize| {
        values
            .iter()
            .map(|v| format!("{v:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\nsummary ({ROUNDS} rounds, interleaved):");
    println!("figure                        median  runs");
    println!("--------------------------------------------------------------");
    println!(
        "replay throughput (ev/s)  {throughput:>10.1}  {}",
        list(&throughputs, 1)
    );
    println!("spike p99 (ms)            {p99:>10.3}  {}", list(&p99s, 3));
    println!("pgbench plain (tps)       {plain:>10.1}");
    println!("pgbench pipelined (tps)   {pipelined:>10.1}");
    println!("throughput / plain        {:>10.3}", throughput / plain);
    println!("throughput / pipelined    {:>10.3}", throughput / pipelined);

    server.shutdown(Duration::from_secs(1));
    cluster.stop().expect("the cluster stops");
}
