//! `tally-pipeline`: the market-event pipeline's command line.
//!
//! ```text
//! cargo run --release -p tally-pipeline -- run
//! cargo run --release -p tally-pipeline -- replay data/stocks-monthly-2000-2010.csv --rate 500
//! cargo run --release -p tally-pipeline -- spike --baseline-rate 200 --spike-rate 2000 --spike-secs 10
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tally::protocols::http1::Url;
use tally::protocols::pg::Config as PgConfig;
use tally::Runtime;
use tally_harness::cluster::{self, Cluster};
use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault};
use tally_pipeline::report::{render_svg, render_table};
use tally_pipeline::run::{self, Input, Services, Settings, Spike};

#[derive(Parser, Debug)]
#[command(
    name = "tally-pipeline",
    version,
    about = "Real market data through HTTP enrichment, Postgres and an audit log, with a report of what was left behind"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replays the bundled real data through the whole pipeline.
    Run(Common),
    /// Replays the given files (CSV, optionally gzip-compressed).
    Replay {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The symbol for files whose rows carry none (default: the file name).
        #[arg(long)]
        symbol: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A baseline rate, a spike, then the baseline again, drawn from the bundled data.
    Spike {
        /// Events per second before and after the spike.
        #[arg(long, default_value_t = 200.0)]
        baseline_rate: f64,
        /// Seconds of baseline, before and after.
        #[arg(long, default_value_t = 5.0)]
        baseline_secs: f64,
        /// Events per second during the spike.
        #[arg(long, default_value_t = 2000.0)]
        spike_rate: f64,
        /// Seconds of spike.
        #[arg(long, default_value_t = 10.0)]
        spike_secs: f64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Events per second to admit (default: as fast as the pipeline takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Passes over the input.
    #[arg(long, default_value_t = 1)]
    loops: u32,
    /// The most events in flight.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Postgres connections.
    #[arg(long, default_value_t = 8)]
    pg_pool_size: usize,
    /// HTTP connections.
    #[arg(long, default_value_t = 16)]
    http_pool_size: usize,
    /// Each enrichment attempt's limit, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    http_timeout: u64,
    /// Attempts per stage.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Each event's limit, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    event_deadline: u64,
    /// Where the audit log and the dead letters go.
    #[arg(long, default_value = "audit")]
    audit_dir: PathBuf,
    /// The database (default: a throwaway cluster from the installed server binaries).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The enrichment service (default: the built-in one).
    #[arg(long)]
    enrich_url: Option<String>,
    /// The built-in enrichment server's faults, in percent of requests (every kind).
    #[arg(long, default_value_t = 0.0)]
    faults: f64,
    /// The seed of the fault mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A symbol whose event tasks panic (to show a panic loses nothing).
    #[arg(long)]
    poison: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the timeline picture (SVG) here.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// No progress line (by default: a live line on a terminal, a plain line
    /// every five seconds otherwise).
    #[arg(long)]
    quiet: bool,
}

/// Refuses settings that cannot mean anything, before anything starts.
fn check(common: &Common) -> anyhow::Result<()> {
    if let Some(rate) = common.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a number of events per second above zero (leave it out to go as fast as possible)");
        }
    }
    for (flag, value) in [
        ("--loops", common.loops as u64),
        ("--max-in-flight", common.max_in_flight as u64),
        ("--pg-pool-size", common.pg_pool_size as u64),
        ("--http-pool-size", common.http_pool_size as u64),
        ("--http-timeout", common.http_timeout),
        ("--retries", common.retries as u64),
        ("--event-deadline", common.event_deadline),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if !(0.0..=100.0).contains(&common.faults) {
        bail!("--faults is a percentage, from 0 to 100");
    }
    if let Some(url) = &common.enrich_url {
        Url::parse(url).map_err(|e| anyhow::anyhow!("bad --enrich-url: {e}"))?;
    }
    // The audit directory must take files; the report and the timeline must
    // have somewhere to go: find out now, not after the run.
    std::fs::create_dir_all(&common.audit_dir).with_context(|| {
        format!(
            "cannot create the audit directory {}",
            common.audit_dir.display()
        )
    })?;
    let probe = common
        .audit_dir
        .join(format!(".tally-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write in the audit directory {}",
            common.audit_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    for path in [&common.report, &common.timeline].into_iter().flatten() {
        std::fs::write(path, b"").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn settings(common: &Common, inputs: Vec<Input>, spike: Option<Spike>) -> Settings {
    Settings {
        inputs,
        loops: common.loops,
        rate: common.rate,
        spike,
        max_in_flight: common.max_in_flight.max(1),
        pg_pool_size: common.pg_pool_size.max(1),
        http_pool_size: common.http_pool_size.max(1),
        http_timeout: Duration::from_millis(common.http_timeout.max(1)),
        retries: common.retries.max(1),
        event_deadline: Duration::from_millis(common.event_deadline.max(1)),
        audit_dir: common.audit_dir.clone(),
        poison: common.poison.clone(),
        settle_limit: Duration::from_secs(10),
        progress: !common.quiet,
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            // The chain, each cause once (some errors already name their cause).
            let mut message = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("tally-pipeline: {message}");
            ExitCode::from(1)
        }
    }
}

/// A panicking event task is counted, dead-lettered with its message and
/// reported; the default hook's backtrace note per panic would only drown
/// the report. One line each for the first few, then a count at the end.
fn quiet_panics() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    std::panic::set_hook(Box::new(move |info| {
        if seen.fetch_add(1, Ordering::Relaxed) < 3 {
            let at = info
                .location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("tally-pipeline: a task panicked{at}: {message} (counted and dead-lettered)");
        }
    }));
    count
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let panics = quiet_panics();
    let (common, settings) = match &cli.command {
        Command::Run(common) => (common, settings(common, run::bundled(), None)),
        Command::Replay {
            files,
            symbol,
            common,
        } => {
            let inputs = files
                .iter()
                .map(|path| Input {
                    path: path.clone(),
                    symbol: symbol.clone(),
                })
                .collect();
            (common, settings(common, inputs, None))
        }
        Command::Spike {
            baseline_rate,
            baseline_secs,
            spike_rate,
            spike_secs,
            common,
        } => {
            if !(baseline_rate.is_finite()
                && *baseline_rate > 0.0
                && spike_rate.is_finite()
                && *spike_rate > 0.0)
            {
                bail!("the rates must be above zero");
            }
            if !(baseline_secs.is_finite() && spike_secs.is_finite())
                || *baseline_secs < 0.0
                || *spike_secs < 0.0
            {
                bail!("the durations must be zero or more seconds");
            }
            let spike = Spike {
                baseline_rate: *baseline_rate,
                baseline_secs: baseline_secs.max(0.0),
                spike_rate: *spike_rate,
                spike_secs: spike_secs.max(0.0),
            };
            (common, settings(common, run::bundled(), Some(spike)))
        }
    };

    check(common)?;
    // Every input must open (and have a known header) before anything starts.
    for input in &settings.inputs {
        let options = tally_pipeline::source::ReaderOptions {
            symbol: input.symbol.clone(),
            pass: 1,
        };
        tally_pipeline::source::Reader::open(&input.path, &options)
            .context("cannot read the input")?;
    }

    // The embedded defaults: a throwaway cluster, the built-in enrichment server.
    let mut cluster = None;
    let pg: PgConfig = match &common.database_url {
        Some(url) => url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad --database-url: {e}"))?,
        None => {
            eprintln!("tally-pipeline: no DATABASE_URL: starting a throwaway PostgreSQL cluster");
            let started =
                Cluster::start().context("cannot start a throwaway PostgreSQL cluster")?;
            let config = started
                .url(cluster::SUPERUSER)
                .parse()
                .map_err(|e| anyhow::anyhow!("the cluster's URL: {e}"))?;
            cluster = Some(started);
            config
        }
    };
    let mut enrich_server = None;
    let enrich = match &common.enrich_url {
        Some(url) => Url::parse(url).map_err(|e| anyhow::anyhow!("bad --enrich-url: {e}"))?,
        None => {
            let mut config = EnrichConfig::new().seed(common.seed);
            if common.faults > 0.0 {
                config =
                    config
                        .fault_percent(common.faults)
                        .mix(Fault::all(Duration::from_millis(
                            common.http_timeout.saturating_add(1000),
                        )));
            }
            let server = EnrichServer::start(config)
                .context("cannot start the built-in enrichment server")?;
            let url = Url::parse(&server.url()).map_err(|e| anyhow::anyhow!("{e}"))?;
            enrich_server = Some(server);
            url
        }
    };

    let rt = Runtime::builder()
        .name("pipeline")
        .build()
        .context("cannot start the runtime")?;
    let result = rt.block_on(run::run(settings, Services { pg, enrich }));
    let report = rt.shutdown(Duration::from_secs(2));
    if !report.is_clean() {
        eprintln!("tally-pipeline: {report}");
    }
    if let Some(server) = enrich_server {
        server.shutdown(Duration::from_secs(1));
    }
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(c) = cluster {
                let _ = c.stop();
            }
            return Err(e.into());
        }
    };
    if let Some(c) = cluster {
        c.stop().context("stopping the throwaway cluster")?;
    }
    println!("{}", render_table(&outcome.report));
    if outcome.source_lag > Duration::from_millis(1) {
        println!(
            "source lag (admissions behind their schedule): up to {:.1} ms",
            outcome.source_lag.as_secs_f64() * 1000.0
        );
    }
    let panicked = panics.load(std::sync::atomic::Ordering::Relaxed);
    if panicked > 3 {
        eprintln!("tally-pipeline: {panicked} tasks panicked in all (each counted failed and dead-lettered)");
    }
    if let Some(e) = &outcome.input_error {
        eprintln!("tally-pipeline: the input stopped early: {e}");
    }
    if let Some(path) = &common.report {
        let json = outcome.report.to_json().context("encoding the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &common.timeline {
        render_svg(&outcome.report, path).with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(ExitCode::from(outcome.status.code() as u8))
}
