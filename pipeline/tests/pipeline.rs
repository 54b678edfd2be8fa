//! The pipeline end to end on the bundled real data, against a throwaway
//! PostgreSQL cluster and the built-in enrichment server: each test checks
//! the report, the database and the files. File descriptors are counted per
//! process: run these under cargo-nextest (a process per test), as the
//! README's test command does.

use std::path::PathBuf;
use std::time::Duration;

use tally::protocols::http1::Url;
use tally::Runtime;
use tally_harness::cluster::{self, Cluster};
use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault};
use tally_pipeline::exit::ExitStatus;
use tally_pipeline::run::{self, Input, Outcome, Services, Settings};

const BUNDLED_ROWS: u64 = 5031 + 560;

struct Env {
    cluster: Cluster,
    enrich: EnrichServer,
    audit: PathBuf,
}

impl Env {
    fn start(enrich: EnrichConfig) -> Env {
        let audit = std::env::temp_dir().join(format!(
            "tally-pipeline-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Env {
            cluster: Cluster::start().unwrap(),
            enrich: EnrichServer::start(enrich).unwrap(),
            audit,
        }
    }

    fn settings(&self, inputs: Vec<Input>) -> Settings {
        Settings {
            inputs,
            audit_dir: self.audit.clone(),
            ..Settings::default()
        }
    }

    fn run(&self, settings: Settings) -> Outcome {
        let services = Services {
            pg: self.cluster.url(cluster::SUPERUSER).parse().unwrap(),
            enrich: Url::parse(&self.enrich.url()).unwrap(),
        };
        let rt = Runtime::builder().workers(2).build().unwrap();
        let outcome = rt.block_on(run::run(settings, services)).unwrap();
        assert!(rt.shutdown(Duration::from_secs(1)).is_clean());
        outcome
    }

    fn db(&self, sql: &str) -> String {
        self.cluster.psql_query(sql).unwrap().trim().to_owned()
    }

    fn audit_lines(&self) -> usize {
        std::fs::read_dir(&self.audit)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("audit_"))
            })
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
            .sum()
    }

    fn dead_letters(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.audit.join("dead_letter.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.audit);
    }
}

fn assert_clean(outcome: &Outcome) {
    let r = &outcome.report;
    assert_eq!(r.tasks.final_, r.tasks.baseline, "tasks back at baseline");
    assert_eq!(
        r.fds.final_, r.fds.baseline,
        "file descriptors back at baseline"
    );
    assert!(
        r.pg.max_idle_in_transaction_s < 1.0,
        "{}",
        r.pg.max_idle_in_transaction_s
    );
    assert!(r.pg.seconds_to_all_idle.is_some());
    assert_eq!(r.admitted, r.processed + r.failed + r.interrupted);
}

#[test]
fn the_bundled_data_goes_through_end_to_end_with_nothing_left_behind() {
    let env = Env::start(EnrichConfig::new());
    let outcome = env.run(env.settings(run::bundled()));
    let r = &outcome.report;
    assert_eq!(outcome.status, ExitStatus::Success);
    assert_eq!(
        (r.admitted, r.processed, r.failed, r.rejected),
        (BUNDLED_ROWS, BUNDLED_ROWS, 0, 0)
    );
    assert_eq!(r.db_rows, r.processed);
    assert_eq!(r.audit_lines, r.processed);
    assert_eq!(r.dead_letters, 0);
    assert_clean(&outcome);
    assert_eq!(
        env.db("SELECT count(*) FROM market_events"),
        BUNDLED_ROWS.to_string()
    );
    assert_eq!(env.audit_lines() as u64, BUNDLED_ROWS);
    assert!(env.dead_letters().is_empty());
    // A row as stored: the first S&P 500 day, enriched.
    let first = env.db(
        "SELECT symbol || '|' || price || '|' || volume || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || '|' || (enrichment->>'sector') \
         FROM market_events WHERE event_id = 'sp500-daily-1999-2018:1'",
    );
    assert!(
        first.starts_with("^GSPC|1228.099976|877000000|1999-01-04 21:00|"),
        "{first}"
    );
    let json: serde_json::Value = serde_json::from_str(&outcome.report.to_json().unwrap()).unwrap();
    for key in [
        "admitted",
        "processed",
        "db_rows",
        "latency_ms",
        "tasks",
        "pg",
        "http",
        "fds",
        "rss_bytes",
        "series",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn replaying_the_same_files_processes_them_again_stores_nothing_new_and_appends_audit_lines() {
    let env = Env::start(EnrichConfig::new());
    let first = env.run(env.settings(run::bundled()));
    let second = env.run(env.settings(run::bundled()));
    assert_eq!(first.report.processed, BUNDLED_ROWS);
    assert_eq!(second.report.processed, BUNDLED_ROWS);
    assert_eq!(second.report.db_rows, BUNDLED_ROWS);
    assert_eq!(
        env.db("SELECT count(*) FROM market_events"),
        BUNDLED_ROWS.to_string()
    );
    assert_eq!(env.audit_lines() as u64, 2 * BUNDLED_ROWS);
    assert_clean(&second);
}

#[test]
fn a_poisoned_symbol_panics_each_of_its_events_into_the_dead_letters_and_the_rest_goes_through() {
    std::panic::set_hook(Box::new(|_| {}));
    let env = Env::start(EnrichConfig::new());
    let settings = Settings {
        poison: Some("IBM".into()),
        ..env.settings(run::bundled())
    };
    let outcome = env.run(settings);
    let r = &outcome.report;
    // The stocks file has 123 IBM rows.
    assert_eq!(r.failed, 123);
    assert_eq!(r.processed, BUNDLED_ROWS - 123);
    assert_eq!(outcome.status, ExitStatus::CompletedWithFailures);
    let dead = env.dead_letters();
    assert_eq!(dead.len(), 123);
    assert!(dead
        .iter()
        .all(|d| d["symbol"] == "IBM" && d["reason"].as_str().unwrap().contains("panicked")));
    assert_eq!(
        env.db("SELECT count(*) FROM market_events WHERE symbol = 'IBM'"),
        "0"
    );
    assert_clean(&outcome);
}

#[test]
fn malformed_rows_are_rejected_with_their_line_numbers_and_the_rest_is_processed() {
    let env = Env::start(EnrichConfig::new());
    std::fs::create_dir_all(&env.audit).unwrap();
    let file = env.audit.join("mixed.csv");
    std::fs::write(
        &file,
        "symbol,date,price\nMSFT,Jan 1 2000,39.81\nMSFT,not a date,1\nAAPL,Feb 1 2000,abc\nAAPL,Mar 1 2000,28.66\nGOOG,Apr 1 2000\n",
    )
    .unwrap();
    let outcome = env.run(env.settings(vec![Input {
        path: file,
        symbol: None,
    }]));
    let r = &outcome.report;
    assert_eq!((r.admitted, r.processed, r.rejected), (2, 2, 3));
    assert_eq!(outcome.status, ExitStatus::CompletedWithFailures);
    let lines: Vec<u64> = env
        .dead_letters()
        .iter()
        .filter(|d| d["kind"] == "rejected")
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4, 6]);
    assert_eq!(env.db("SELECT count(*) FROM market_events"), "2");
}

#[test]
fn every_enrichment_fault_and_a_terminate_storm_lose_nothing_and_store_nothing_twice() {
    let env = Env::start(
        EnrichConfig::new()
            .seed(11)
            .fault_percent(8.0)
            .mix(Fault::all(Duration::from_millis(600)))
            .linger(Duration::from_millis(100)),
    );
    let settings = Settings {
        http_timeout: Duration::from_millis(300),
        loops: 2,
        rate: Some(3000.0),
        ..env.settings(run::bundled())
    };
    // A pg_terminate_backend storm while the run goes on.
    let url = env.cluster.url(cluster::SUPERUSER);
    let storm = std::thread::spawn(move || {
        let mut killed = 0;
        for _ in 0..15 {
            std::thread::sleep(Duration::from_millis(150));
            let out = std::process::Command::new("psql")
                .args([
                    url.as_str(),
                    "-Atc",
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tally-pipeline'",
                ])
                .output()
                .unwrap();
            killed += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
        killed
    });
    let outcome = env.run(settings);
    let killed = storm.join().unwrap();
    let r = &outcome.report;
    assert!(killed > 0, "the storm killed nothing");
    assert_eq!(r.admitted, 2 * BUNDLED_ROWS);
    assert!(r.failed > 0, "some events must fail under faults");
    assert!(r.processed > r.admitted / 2);
    assert_clean(&outcome);
    // Everything admitted is processed or in the dead letters.
    let dead = env.dead_letters();
    assert_eq!(dead.len() as u64, r.failed + r.interrupted);
    // Nothing stored twice: the unique key holds, and rows match the report's bounds.
    assert_eq!(
        env.db("SELECT count(*) - count(DISTINCT event_id) FROM market_events"),
        "0"
    );
    assert!(r.processed <= r.db_rows && r.db_rows <= r.processed + r.failed + r.interrupted);
    assert_eq!(r.audit_lines, r.processed);
    assert_eq!(env.enrich.reuse_violations(), 0);
}
