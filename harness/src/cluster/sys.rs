//! The operating-system side: finding the binaries, running them as the
//! `postgres` user, the watchdog, and cleaning up after dead processes.

use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::ClusterError;

/// The prefix of every cluster directory's name: `tally-pg-<pid>-<n>-<random>`.
pub(crate) const DIR_PREFIX: &str = "tally-pg-";

/// Where the PostgreSQL binaries are.
#[derive(Clone, Debug)]
pub(crate) struct Bins {
    pub(crate) dir: PathBuf,
    pub(crate) psql: PathBuf,
}

impl Bins {
    pub(crate) fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    pub(crate) fn pg_ctl(&self) -> PathBuf {
        self.dir.join("pg_ctl")
    }

    /// Finds the server binaries: `explicit`, then `PG_BIN`, then
    /// `pg_config --bindir`, then `PATH`, then the highest
    /// `/usr/lib/postgresql/*/bin`.
    pub(crate) fn find(explicit: Option<&Path>) -> Result<Bins, ClusterError> {
        let mut searched = Vec::new();
        let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        let pinned = explicit
            .map(|p| (p.to_path_buf(), "the builder's bin_dir"))
            .or_else(|| {
                std::env::var_os("PG_BIN")
                    .filter(|v| !v.is_empty())
                    .map(|v| (PathBuf::from(v), "PG_BIN"))
            });
        if let Some((dir, origin)) = pinned {
            // A directory named on purpose is not second-guessed.
            if has_server(&dir) {
                return Ok(Bins::in_dir(dir));
            }
            return Err(ClusterError::BinariesNotFound {
                searched: format!("{} (from {origin})", dir.display()),
            });
        }
        let mut candidates = Vec::new();
        if let Ok(out) = Command::new("pg_config")
            .arg("--bindir")
            .stdin(Stdio::null())
            .output()
        {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !dir.is_empty() {
                    candidates.push(PathBuf::from(dir));
                }
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        candidates.extend(debian_bin_dirs());
        for dir in candidates {
            if has_server(&dir) {
                return Ok(Bins::in_dir(dir));
            }
            searched.push(dir.display().to_string());
        }
        if searched.is_empty() {
            searched.push("pg_config, PATH, /usr/lib/postgresql/*/bin".to_string());
        }
        Err(ClusterError::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    fn in_dir(dir: PathBuf) -> Bins {
        let psql = dir.join("psql");
        let psql = if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        };
        Bins { dir, psql }
    }
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Who the server runs as.
#[derive(Clone, Debug)]
pub(crate) enum RunAs {
    /// This process's own user (not root).
    Myself,
    /// The `postgres` user, switched to with `runuser` or `setpriv`.
    Postgres {
        uid: u32,
        gid: u32,
        /// The words that run a program as `postgres`.
        prefix: Vec<String>,
    },
}

impl RunAs {
    pub(crate) fn detect() -> Result<RunAs, ClusterError> {
        let uid = fs::metadata("/proc/self")
            .map(|m| m.uid())
            .map_err(|e| ClusterError::io("reading /proc/self", e))?;
        if uid != 0 {
            return Ok(RunAs::Myself);
        }
        let (uid, gid) = postgres_ids().ok_or_else(|| ClusterError::NoPostgresUser {
            detail: "no `postgres` user in /etc/passwd or `id postgres`".to_string(),
        })?;
        let prefix = if let Some(runuser) = which("runuser") {
            vec![
                runuser.display().to_string(),
                "-u".into(),
                "postgres".into(),
                "--".into(),
            ]
        } else if let Some(setpriv) = which("setpriv") {
            vec![
                setpriv.display().to_string(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--init-groups".into(),
                "--".into(),
            ]
        } else {
            return Err(ClusterError::NoPostgresUser {
                detail: "neither `runuser` nor `setpriv` (util-linux) was found".to_string(),
            });
        };
        Ok(RunAs::Postgres { uid, gid, prefix })
    }

    /// A command running `program` as the server's user, with a clean
    /// environment (no `PG*` variables, C locale) and `cwd` as its directory.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut cmd = match self {
            RunAs::Myself => Command::new(program),
            RunAs::Postgres { prefix, .. } => {
                let mut cmd = Command::new(&prefix[0]);
                cmd.args(&prefix[1..]).arg(program);
                cmd
            }
        };
        clean_env(&mut cmd);
        cmd.current_dir(cwd).stdin(Stdio::null());
        cmd
    }

    /// Gives `path` to the server's user (when we are root).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), ClusterError> {
        match self {
            RunAs::Myself => Ok(()),
            RunAs::Postgres { uid, gid, .. } => {
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(|e| {
                    ClusterError::io(format!("chown {} to postgres", path.display()), e)
                })
            }
        }
    }

    /// Whether the server's user can reach `dir` (every ancestor searchable).
    pub(crate) fn can_traverse(&self, dir: &Path) -> bool {
        let RunAs::Postgres { uid, gid, .. } = self else {
            return true;
        };
        dir.ancestors().all(|a| match fs::metadata(a) {
            Ok(m) => {
                let mode = m.permissions().mode();
                mode & 0o001 != 0
                    || (m.uid() == *uid && mode & 0o100 != 0)
                    || (m.gid() == *gid && mode & 0o010 != 0)
            }
            Err(_) => false,
        })
    }

    /// The words the watchdog's shell puts before `pg_ctl`.
    fn shell_prefix(&self) -> String {
        match self {
            RunAs::Myself => String::new(),
            RunAs::Postgres { prefix, .. } => prefix.join(" "),
        }
    }
}

/// Removes the `PG*` variables (they would redirect or alter our commands)
/// and pins the C locale (so messages can be matched).
pub(crate) fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").env("PGAPPNAME", "tally-harness");
}

fn postgres_ids() -> Option<(u32, u32)> {
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == "postgres" {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return Some((uid, gid));
                }
            }
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs a command to completion; `Err` with its output when it fails.
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<Output, ClusterError> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ClusterError::io(format!("running {what}"), e))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(ClusterError::CommandFailed {
            command: what.to_string(),
            output: output_text(&out),
        })
    }
}

/// Standard output and error together, as text.
pub(crate) fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    let text = text.trim_end().to_string();
    if text.is_empty() {
        format!("exit status {}", out.status)
    } else {
        text
    }
}

/// The last lines (about 4 KiB) of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let mut bytes = Vec::new();
    if fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .is_err()
    {
        return format!("(no log at {})", path.display());
    }
    const TAIL: usize = 4096;
    let start = bytes.len().saturating_sub(TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = if start > 0 {
        text.split_once('\n').map_or(&*text, |(_, rest)| rest)
    } else {
        &text
    };
    text.trim_end().to_string()
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`), which tells
/// it apart from a later process given the same pid. `None` when it is gone
/// or a zombie.
pub(crate) fn process_start_time(pid: &str) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: skip past it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 is fields[19].
    match fields.first() {
        Some(&"Z") | Some(&"X") | None => None,
        Some(_) => fields.get(19).map(|s| s.to_string()),
    }
}

const WATCHDOG: &str = r#"P=$1; T=$2; DIR=$3; DATA=$4; CTL=$5; AS=$6
while :; do
  s=$(cat /proc/"$P"/stat 2>/dev/null) || break
  s=${s##*) }
  set -- $s
  [ $# -ge 20 ] || break
  case $1 in Z|X) break ;; esac
  shift 19
  [ "$1" = "$T" ] || break
  sleep 0.5
done
if [ -f "$DATA/postmaster.pid" ]; then
  $AS "$CTL" stop -D "$DATA" -m immediate -w -t 10 >/dev/null 2>&1
fi
rm -rf "$DIR"
"#;

/// Starts the watchdog: a shell in a process group of its own (so signals to
/// ours do not reach it) that polls this process every half second and, once
/// it is gone, stops the server immediately and removes `dir`.
pub(crate) fn spawn_watchdog(
    run_as: &RunAs,
    bins: &Bins,
    dir: &Path,
    data: &Path,
) -> Result<Child, ClusterError> {
    let pid = std::process::id().to_string();
    let start = process_start_time("self").ok_or_else(|| {
        ClusterError::io(
            "reading /proc/self/stat",
            std::io::Error::other("no start time"),
        )
    })?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("tally-pg-watchdog")
        .arg(pid)
        .arg(start)
        .arg(dir)
        .arg(data)
        .arg(bins.pg_ctl())
        .arg(run_as.shell_prefix());
    clean_env(&mut cmd);
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd.spawn()
        .map_err(|e| ClusterError::io("starting the watchdog (sh)", e))
}

/// Removes the cluster directories under `base` whose process is gone,
/// stopping (immediately) any server still running in them. Best effort.
pub(crate) fn clean_stale(base: &Path, run_as: &RunAs, bins: &Bins) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let me = std::process::id().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if process_start_time(pid).is_some() {
            continue;
        }
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let mut stop = run_as.command(bins.pg_ctl(), Path::new("/"));
            stop.arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "10"]);
            let _ = run(stop, "pg_ctl stop (stale cluster)");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
