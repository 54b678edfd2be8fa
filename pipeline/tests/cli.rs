//! The command line as a user runs it: exit codes, messages, the printed
//! report, the JSON and the timeline. Each run starts its own throwaway
//! cluster and the built-in enrichment server, as on a fresh machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-pipeline"));
    command.env_remove("DATABASE_URL");
    command
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_input_gives_a_clear_message_and_exit_1_without_a_backtrace() {
    for (args, expected) in [
        (
            vec!["replay", "/no/such/file.csv"],
            "cannot open /no/such/file.csv",
        ),
        (
            vec!["replay", env!("CARGO_MANIFEST_DIR")],
            "cannot read the input",
        ),
        (
            vec![
                "run",
                "--database-url",
                "postgres://nobody@127.0.0.1:1/db",
                "--quiet",
            ],
            "cannot use the database",
        ),
        (
            vec!["run", "--enrich-url", "http://127.0.0.1:1", "--quiet"],
            "the enrichment service does not answer",
        ),
        (
            vec!["spike", "--baseline-rate", "0"],
            "the rates must be above zero",
        ),
        (
            vec!["run", "--rate", "0"],
            "--rate must be a number of events per second above zero",
        ),
        (vec!["run", "--loops", "0"], "--loops must be at least 1"),
        (
            vec!["run", "--report", "/no/such/dir/report.json"],
            "cannot write /no/such/dir/report.json",
        ),
    ] {
        let dir = temp_dir("bad");
        let out = pipeline()
            .args(&args)
            .arg("--audit-dir")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_replay_prints_the_report_and_writes_its_json_and_timeline() {
    let dir = temp_dir("replay");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/stocks-monthly-2000-2010.csv");
    let out = pipeline()
        .args([
            "replay",
            data.to_str().unwrap(),
            "--rate",
            "1000",
            "--quiet",
        ])
        .arg("--audit-dir")
        .arg(dir.join("audit"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .arg("--timeline")
        .arg(dir.join("timeline.svg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in [
        "admitted",
        "processed",
        "db_rows",
        "latency p99",
        "live tasks",
        "open fds",
    ] {
        assert!(stdout.contains(figure), "{figure} missing from:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["admitted"], 560, "{report}");
    assert_eq!(report["processed"], 560, "{report}");
    assert_eq!(report["db_rows"], 560, "{report}");
    assert_eq!(
        report["tasks"]["final"], report["tasks"]["baseline"],
        "{report}"
    );
    assert!(report["series"].as_array().is_some_and(|s| !s.is_empty()));
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_mid_spike_still_prints_the_report_and_exits_130() {
    let dir = temp_dir("ctrl-c");
    let child = pipeline()
        .args([
            "spike",
            "--baseline-rate",
            "200",
            "--baseline-secs",
            "2",
            "--spike-rate",
            "2000",
            "--spike-secs",
            "20",
            "--quiet",
            "--http-timeout",
            "500",
        ])
        .arg("--audit-dir")
        .arg(dir.join("audit"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The cluster starts in about a second, then two seconds of baseline.
    std::thread::sleep(Duration::from_secs(5));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Grace (the HTTP timeout and a second) plus settling and the cluster's stop.
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let n = |k: &str| report[k].as_u64().unwrap();
    assert_eq!(
        n("admitted"),
        n("processed") + n("failed") + n("interrupted")
    );
    assert!(n("admitted") < 200 * 4 + 2000 * 20);
    let _ = std::fs::remove_dir_all(&dir);
}
