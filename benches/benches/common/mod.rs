//! What several benches share: finding and running pgbench, and the
//! figures of their summaries.

// Each bench binary uses only some of these.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::Duration;
use tally_harness::cluster::{DATABASE, HOST, SUPERUSER};

/// `pgbench`, found as the harness finds the server binaries.
pub(crate) fn find_pgbench() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !dir.is_empty() {
            dirs.push(PathBuf::from(dir));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    }
    dirs.into_iter()
        .map(|dir| dir.join("pgbench"))
        .find(|bin| bin.is_file())
}

/// Runs pgbench (`-n -M prepared -T seconds`) with `script` and `clients`
/// against the throwaway cluster on `port`, with no `PG*` variables of the
/// caller's leaking in; its standard output.
pub(crate) fn run_pgbench(
    bin: &Path,
    port: u16,
    script: &Path,
    clients: &[&str],
    seconds: &str,
) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.args(["-n", "-M", "prepared", "-T", seconds])
        .args(clients)
        .arg("-f")
        .arg(script)
        .args([
            "-h",
            HOST,
            "-p",
            &port.to_string(),
            "-U",
            SUPERUSER,
            DATABASE,
        ])
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The 10th, 50th and 90th percentiles of some timings.
pub(crate) fn percentiles(mut times: Vec<Duration>) -> [Duration; 3] {
    times.sort_unstable();
    [10, 50, 90].map(|p| times[times.len() * p / 100])
}

/// A duration in microseconds, for a summary line.
pub(crate) fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
