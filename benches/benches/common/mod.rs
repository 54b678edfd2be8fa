//! What several benches share: finding pgbench.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
