//! Ctrl-C in the middle of a spike: a real SIGINT to this process. Alone in
//! its binary, since signal handling is per process.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{getpid, kill_process, Signal};
use tally::protocols::http1::Url;
use tally::Runtime;
use tally_harness::cluster::{self, Cluster};
use tally_harness::enrich::{EnrichConfig, EnrichServer};
use tally_pipeline::exit::ExitStatus;
use tally_pipeline::run::{self, Input, Services, Settings, Spike};

#[test]
fn ctrl_c_in_the_middle_of_a_spike_shuts_down_in_bounds_and_the_counts_agree() {
    let cluster = Cluster::start().unwrap();
    let enrich = EnrichServer::start(EnrichConfig::new()).unwrap();
    let audit = std::env::temp_dir().join(format!("tally-pipeline-ctrl-c-{}", std::process::id()));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let settings = Settings {
        inputs: vec![Input {
            path: data.join("stocks-monthly-2000-2010.csv"),
            symbol: None,
        }],
        spike: Some(Spike {
            baseline_rate: 200.0,
            baseline_secs: 2.0,
            spike_rate: 2000.0,
            spike_secs: 6.0,
        }),
        http_timeout: Duration::from_millis(500),
        audit_dir: audit.clone(),
        ..Settings::default()
    };
    let services = Services {
        pg: cluster.url(cluster::SUPERUSER).parse().unwrap(),
        enrich: Url::parse(&enrich.url()).unwrap(),
    };
    // Mid-spike: 2 s of baseline, then 1.5 s into the spike.
    let signal = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(3500));
        kill_process(getpid(), Signal::INT).unwrap();
    });
    let rt = Runtime::builder().workers(2).build().unwrap();
    let start = Instant::now();
    let outcome = rt.block_on(run::run(settings, services)).unwrap();
    let took = start.elapsed();
    signal.join().unwrap();
    let r = &outcome.report;
    assert_eq!(outcome.status, ExitStatus::Interrupted);
    // The whole spike would take 10 s; the run stopped at the signal, within
    // the shutdown grace and the settle.
    assert!(took < Duration::from_secs(9), "{took:?}");
    assert!(
        r.admitted > 400 && r.admitted < 400 + 12_000,
        "{}",
        r.admitted
    );
    assert_eq!(r.admitted, r.processed + r.failed + r.interrupted);
    assert_eq!(r.audit_lines, r.processed);
    assert!(r.processed <= r.db_rows && r.db_rows <= r.processed + r.failed + r.interrupted);
    assert_eq!(r.tasks.final_, r.tasks.baseline);
    assert!(r.pg.max_idle_in_transaction_s < 1.0);
    let dead = std::fs::read_to_string(audit.join("dead_letter.jsonl")).unwrap_or_default();
    assert_eq!(dead.lines().count() as u64, r.failed + r.interrupted);
    assert!(rt.shutdown(Duration::from_secs(1)).is_clean());
    let _ = std::fs::remove_dir_all(&audit);
    cluster.stop().unwrap();
}
