//! A throwaway PostgreSQL cluster on loopback, for tests and benches.
//!
//! [`Cluster::start`] runs `initdb` into a fresh directory under the system
//! temporary directory (`tally-pg-<pid>-<n>-<random>`), starts a server on a
//! free port of `127.0.0.1` (and on a Unix socket in that directory), creates
//! the roles of [`users`](User::defaults) and the database [`DATABASE`], and
//! waits until it accepts connections. [`Cluster::stop`] stops the server and
//! removes the directory; dropping a running cluster does the same.
//!
//! Roles, with `pg_hba.conf` lines for both the loopback address and the
//! Unix socket:
//!
//! | role            | password            | method          |
//! |-----------------|---------------------|-----------------|
//! | [`SUPERUSER`]   | none                | `trust`         |
//! | [`MD5_USER`]    | [`MD5_PASSWORD`]    | `md5`           |
//! | [`SCRAM_USER`]  | [`SCRAM_PASSWORD`]  | `scram-sha-256` |
//! | [`CLEAR_USER`]  | [`CLEAR_PASSWORD`]  | `password`      |
//!
//! Any other role (created by a test) authenticates with `scram-sha-256`.
//!
//! The server runs with `fsync`, `synchronous_commit` and `full_page_writes`
//! off and `max_connections = 200` (see [`ClusterBuilder::setting`]), and
//! logs to [`Cluster::log_path`].
//!
//! If the process dies without stopping its cluster, even by `SIGKILL`, a
//! watchdog (a small shell in a process group of its own) stops the server
//! within about a second and removes the directory; directories of dead
//! processes that still remain are cleaned by the next [`Cluster::start`].
//!
//! The administrative calls ([`Cluster::psql_query`],
//! [`Cluster::terminate_backends`], ...) run `psql` as the superuser, not a
//! Rust client, so they test nothing of tally's own.
//!
//! Everything here is **blocking** (it waits for child processes): from
//! async code, wrap each call in [`tally_executor::unblock`] (`tally::unblock`).
//!
//! Linux only (it reads `/proc`). As root, the server runs as the `postgres`
//! OS user. The binaries are found through `PG_BIN`, `pg_config --bindir`,
//! `PATH`, then `/usr/lib/postgresql/*/bin`; without them, starting fails
//! with [`ClusterError::BinariesNotFound`] (install the `postgresql`
//! package).
//!
//! # Example
//!
//! ```no_run
//! use tally_harness::cluster::{Cluster, MD5_USER};
//!
//! let cluster = Cluster::start()?;
//! assert_eq!(cluster.psql_query("select 1")?, "1");
//! // postgres://tally_md5:md5-secret@127.0.0.1:<port>/tally
//! let url = cluster.url(MD5_USER);
//! # let _ = url;
//! cluster.stop()?;
//! # Ok::<(), tally_harness::cluster::ClusterError>(())
//! ```
//!
//! A test that only needs some database can honour `DATABASE_URL` with
//! [`Cluster::from_env_or_start`].

mod database;
mod error;
mod sys;
mod users;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use database::TestDatabase;
pub use error::ClusterError;
pub use users::{
    AuthMethod, User, CLEAR_PASSWORD, CLEAR_USER, DATABASE, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD,
    SCRAM_USER, SUPERUSER,
};

use sys::{Bins, RunAs};

/// The loopback address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// How many times a start is retried when the chosen port was taken meanwhile.
const PORT_ATTEMPTS: u32 = 8;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Options for a [`Cluster`]; [`Cluster::builder`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    users: Vec<User>,
    settings: Vec<(String, String)>,
    base_dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    start_timeout: Duration,
    watchdog: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        let settings = [
            ("max_connections", "200"),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("log_line_prefix", "%m [%p] %q%u@%d %a: "),
        ];
        ClusterBuilder {
            users: User::defaults(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            base_dir: None,
            bin_dir: None,
            start_timeout: Duration::from_secs(30),
            watchdog: true,
        }
    }
}

impl ClusterBuilder {
    /// Adds a login role, replacing any of the same name. ([`SUPERUSER`]
    /// cannot be replaced.)
    pub fn user(mut self, user: User) -> Self {
        self.users.retain(|u| u.name() != user.name());
        if user.name() != SUPERUSER {
            self.users.push(user);
        }
        self
    }

    /// Leaves out the default password roles ([`User::defaults`]); only
    /// [`SUPERUSER`] and the roles added with [`user`](Self::user) remain.
    pub fn without_default_users(mut self) -> Self {
        let defaults = User::defaults();
        self.users.retain(|u| !defaults.contains(u));
        self
    }

    /// Sets a `postgresql.conf` setting, overriding the defaults
    /// (`max_connections = 200`, `fsync`, `synchronous_commit` and
    /// `full_page_writes` off). The value is written quoted, so pass it bare:
    /// `setting("work_mem", "64MB")`. `port`, `listen_addresses` and
    /// `unix_socket_directories` are the harness's and cannot be set.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.settings.retain(|(k, _)| *k != name);
        self.settings.push((name, value.into()));
        self
    }

    /// The directory the cluster directory is made in (default: the system
    /// temporary directory). Stale clusters are looked for there too. When
    /// running as root and the `postgres` user cannot reach it, `/tmp` is
    /// used instead.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The directory holding `initdb` and `pg_ctl`, instead of looking for it.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// How long to wait for the server to accept connections (default 30 s),
    /// at start and at [`Cluster::restart`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Whether to run the watchdog that stops the server when this process
    /// dies (default: yes). Turning it off is only for testing the cleanup
    /// of stale clusters.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }

    /// Creates and starts the cluster.
    ///
    /// # Errors
    ///
    /// [`ClusterError::BinariesNotFound`] without the PostgreSQL binaries,
    /// [`ClusterError::NoPostgresUser`] as root without a `postgres` user,
    /// [`ClusterError::InitdbFailed`], [`ClusterError::NoFreePort`],
    /// [`ClusterError::StartFailed`] or [`ClusterError::NotReady`] (with the
    /// tail of the server log), [`ClusterError::CommandFailed`] when creating
    /// the roles fails, and [`ClusterError::Io`]. Whatever was created is
    /// removed again.
    pub fn start(self) -> Result<Cluster, ClusterError> {
        let bins = Bins::find(self.bin_dir.as_deref())?;
        let run_as = RunAs::detect()?;
        let base = self.choose_base(&run_as);
        sys::clean_stale(&base, &run_as, &bins);
        let root = make_cluster_dir(&base, &run_as)?;
        let data = root.join("data");
        // From here on, dropping `cluster` cleans up whatever exists.
        let mut cluster = Cluster {
            log: root.join("server.log"),
            root,
            data,
            bins,
            run_as,
            port: 0,
            users: self.users.clone(),
            start_timeout: self.start_timeout,
            watchdog: None,
            stopped: false,
        };
        if self.watchdog {
            cluster.watchdog = Some(sys::spawn_watchdog(
                &cluster.run_as,
                &cluster.bins,
                &cluster.root,
                &cluster.data,
            )?);
        }
        cluster.initdb()?;
        cluster.configure(&self.settings)?;
        cluster.start_on_free_port(&self.settings)?;
        cluster.wait_ready()?;
        cluster.create_roles()?;
        Ok(cluster)
    }

    fn choose_base(&self, run_as: &RunAs) -> PathBuf {
        let base = self.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        // A Unix socket path is limited to 107 bytes: leave room for
        // `/tally-pg-<pid>-<n>-<random>/.s.PGSQL.<port>`.
        let short = base.as_os_str().len() <= 60;
        if short && run_as.can_traverse(&base) {
            base
        } else {
            PathBuf::from("/tmp")
        }
    }
}

fn make_cluster_dir(base: &Path, run_as: &RunAs) -> Result<PathBuf, ClusterError> {
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "{}{pid}-{n}-{:08x}",
            sys::DIR_PREFIX,
            fastrand::u32(..)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| ClusterError::io(format!("chmod {}", dir.display()), e))?;
                if let Err(e) = run_as.chown(&dir) {
                    let _ = fs::remove_dir(&dir);
                    return Err(e);
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ClusterError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

/// A running throwaway PostgreSQL cluster. See the [module](self) docs.
///
/// Stop it with [`stop`](Self::stop); dropping it stops it too, ignoring
/// errors.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bins: Bins,
    run_as: RunAs,
    port: u16,
    users: Vec<User>,
    start_timeout: Duration,
    watchdog: Option<Child>,
    stopped: bool,
}

/// A backend of the server, from `pg_stat_activity`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Activity {
    /// The backend's process id.
    pub pid: i32,
    /// `active`, `idle`, `idle in transaction`, ... (empty if unknown).
    pub state: String,
    /// The connection's `application_name`.
    pub application_name: String,
    /// How long its current transaction has run, if it is in one.
    pub xact_age: Option<Duration>,
    /// Its current or last query.
    pub query: String,
}

impl Cluster {
    /// The default options, to adjust before [`ClusterBuilder::start`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts a cluster with the default options.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start() -> Result<Cluster, ClusterError> {
        Self::builder().start()
    }

    /// A database for a test: when `DATABASE_URL` is set (and not empty), a
    /// fresh database `tally_test_<pid>_<n>` created on that server (and
    /// dropped at [`TestDatabase::stop`]); otherwise a cluster of its own
    /// ([`Cluster::start`]). Tests that restart the server or kill backends
    /// need [`Cluster::start`] regardless.
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`], or [`TestDatabase::create_on`] with
    /// `DATABASE_URL`.
    pub fn from_env_or_start() -> Result<TestDatabase, ClusterError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => TestDatabase::create_on(&url),
            _ => Ok(TestDatabase::from_cluster(Cluster::start()?)),
        }
    }

    /// The TCP port the server listens on (on [`host`](Self::host)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.<port>`): the
    /// cluster directory.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last few KiB of the server log.
    pub fn log_tail(&self) -> String {
        sys::log_tail(&self.log)
    }

    /// The login roles besides [`SUPERUSER`].
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The password of `user`, if it is one of the cluster's roles with a
    /// password.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.name() == user)
            .and_then(User::password)
    }

    /// `postgres://user[:password]@127.0.0.1:<port>/tally`, with the password
    /// of `user` when it has one.
    pub fn url(&self, user: &str) -> String {
        self.url_for(user, DATABASE)
    }

    /// As [`url`](Self::url), to `database`.
    pub fn url_for(&self, user: &str, database: &str) -> String {
        let mut url = format!("postgres://{}", percent_encode(user));
        if let Some(password) = self.password(user) {
            let _ = write!(url, ":{}", percent_encode(password));
        }
        let _ = write!(url, "@{HOST}:{}/{}", self.port, percent_encode(database));
        url
    }

    /// `host=127.0.0.1 port=<port> user=<user> password=<password> dbname=tally`
    /// (no `password` for a role without one).
    pub fn key_value(&self, user: &str) -> String {
        self.key_value_with_host(HOST, user)
    }

    /// As [`key_value`](Self::key_value), over the Unix socket:
    /// `host=<socket dir> ...`.
    pub fn socket_key_value(&self, user: &str) -> String {
        self.key_value_with_host(&self.root.display().to_string(), user)
    }

    fn key_value_with_host(&self, host: &str, user: &str) -> String {
        let mut kv = format!(
            "host={} port={} user={}",
            kv_quote(host),
            self.port,
            kv_quote(user)
        );
        if let Some(password) = self.password(user) {
            let _ = write!(kv, " password={}", kv_quote(password));
        }
        let _ = write!(kv, " dbname={}", kv_quote(DATABASE));
        kv
    }

    /// A `psql` command logging in as `user` over TCP to [`DATABASE`]
    /// (`-X -A -t -q -w`, `PGPASSWORD` set to the user's password, other `PG*`
    /// variables removed), ready for more arguments (`-c ...`).
    pub fn psql_command(&self, user: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.bins.psql);
        sys::clean_env(&mut cmd);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-U", user, "-d", DATABASE])
        .stdin(Stdio::null());
        if let Some(password) = self.password(user) {
            cmd.env("PGPASSWORD", password);
        }
        cmd
    }

    /// Runs `sql` with `psql` as [`SUPERUSER`] in [`DATABASE`] and returns
    /// its output, tuples only, unaligned (`|` between columns), without the
    /// final newline. Statements run one by one, each in its own
    /// transaction unless the SQL says otherwise.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] with `psql`'s message when a statement
    /// fails.
    pub fn psql_query(&self, sql: &str) -> Result<String, ClusterError> {
        self.psql_in(DATABASE, sql, &[])
    }

    fn psql_in(&self, database: &str, sql: &str, extra: &[&str]) -> Result<String, ClusterError> {
        let mut cmd = std::process::Command::new(&self.bins.psql);
        sys::clean_env(&mut cmd);
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-f", "-"])
            .args(extra);
        run_with_stdin(cmd, sql, &format!("psql: {}", abbreviate(sql)))
    }

    /// The backends whose `application_name` is `application_name` (the
    /// query's own excluded), from `pg_stat_activity`, by pid.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when `psql` fails.
    pub fn activity(&self, application_name: &str) -> Result<Vec<Activity>, ClusterError> {
        let sql = format!(
            "select pid, coalesce(state, ''), application_name, \
             coalesce(extract(epoch from now() - xact_start)::float8::text, ''), \
             coalesce(query, '') \
             from pg_stat_activity \
             where application_name = {} and pid <> pg_backend_pid() order by pid",
            literal(application_name)
        );
        let out = self.psql_in(DATABASE, &sql, &["-F", "\x1f", "-R", "\x1e"])?;
        out.split('\x1e')
            .map(|record| record.trim_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(|record| {
                let fields: Vec<&str> = record.split('\x1f').collect();
                let bad = || ClusterError::CommandFailed {
                    command: "psql: pg_stat_activity".to_string(),
                    output: format!("unexpected output {record:?}"),
                };
                if fields.len() != 5 {
                    return Err(bad());
                }
                Ok(Activity {
                    pid: fields[0].parse().map_err(|_| bad())?,
                    state: fields[1].to_string(),
                    application_name: fields[2].to_string(),
                    xact_age: fields[3]
                        .parse::<f64>()
                        .ok()
                        .map(|s| Duration::from_secs_f64(s.max(0.0))),
                    query: fields[4].to_string(),
                })
            })
            .collect()
    }

    /// Terminates (`pg_terminate_backend`) every backend whose
    /// `application_name` is `application_name`, and returns how many were
    /// signalled.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when `psql` fails.
    pub fn terminate_backends(&self, application_name: &str) -> Result<usize, ClusterError> {
        let sql = format!(
            "with t as materialized (select pid from pg_stat_activity \
             where application_name = {} and pid <> pg_backend_pid()) \
             select count(*) filter (where pg_terminate_backend(pid)) from t",
            literal(application_name)
        );
        let out = self.psql_query(&sql)?;
        out.trim().parse().map_err(|_| ClusterError::CommandFailed {
            command: "psql: pg_terminate_backend".to_string(),
            output: format!("unexpected output {out:?}"),
        })
    }

    /// Terminates the backend `pid`; `false` when there is no such backend.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when `psql` fails.
    pub fn terminate_backend(&self, pid: i32) -> Result<bool, ClusterError> {
        let out = self.psql_query(&format!("select pg_terminate_backend({pid})"))?;
        Ok(out.trim() == "t")
    }

    /// Creates the database `name`, owned by [`SUPERUSER`] (reach it with
    /// [`url_for`](Self::url_for)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when it exists already or `psql` fails.
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        self.psql_query(&format!(
            "create database {} owner {}",
            ident(name),
            ident(SUPERUSER)
        ))
        .map(drop)
    }

    /// Restarts the server (`pg_ctl restart -m fast`: open connections are
    /// cut) on the same port, and waits until it accepts connections again.
    ///
    /// # Errors
    ///
    /// [`ClusterError::StartFailed`] or [`ClusterError::NotReady`] with the
    /// tail of the server log.
    pub fn restart(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_ctl("restart");
        cmd.args(["-m", "fast"]);
        let out = sys::run(cmd, "pg_ctl restart").map_err(|e| self.start_error(e))?;
        drop(out);
        self.wait_ready()
    }

    /// Stops the server (`pg_ctl stop -m fast`, then `-m immediate` if that
    /// fails), ends the watchdog and removes the cluster directory.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when the server could not be stopped
    /// (the watchdog is then left to stop it when this process ends), or
    /// [`ClusterError::Io`] when the directory could not be removed.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ClusterError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pidfile = self.data.join("postmaster.pid");
        if pidfile.exists() {
            let mut fast = self.pg_ctl("stop");
            fast.args(["-m", "fast"]);
            if sys::run(fast, "pg_ctl stop -m fast").is_err() && pidfile.exists() {
                let mut immediate = self.pg_ctl("stop");
                immediate.args(["-m", "immediate"]);
                if let Err(e) = sys::run(immediate, "pg_ctl stop -m immediate") {
                    if pidfile.exists() {
                        // Leave the watchdog to try again when we are gone.
                        self.watchdog = None;
                        return Err(e);
                    }
                }
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClusterError::io(
                format!("removing {}", self.root.display()),
                e,
            )),
        }
    }

    /// `pg_ctl <action> -D <data> -w -t <timeout> -l <log>` as the server's user.
    fn pg_ctl(&self, action: &str) -> std::process::Command {
        let mut cmd = self.run_as.command(self.bins.pg_ctl(), &self.root);
        cmd.arg(action)
            .arg("-D")
            .arg(&self.data)
            .arg("-w")
            .arg("-t")
            .arg(self.start_timeout.as_secs().max(1).to_string())
            .arg("-l")
            .arg(&self.log);
        cmd
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut cmd = self.run_as.command(self.bins.initdb(), &self.root);
        cmd.arg("-D").arg(&self.data).args(["-U", SUPERUSER]).args([
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        sys::run(cmd, "initdb").map(drop).map_err(|e| match e {
            ClusterError::CommandFailed { output, .. } => ClusterError::InitdbFailed { output },
            other => other,
        })
    }

    /// Writes `pg_hba.conf` and the settings (`tally.conf`, included from
    /// `postgresql.conf`).
    fn configure(&self, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let mut hba =
            String::from("# Written by tally-harness.\n# TYPE DATABASE USER ADDRESS METHOD\n");
        let mut lines = vec![(SUPERUSER.to_string(), AuthMethod::Trust)];
        lines.extend(
            self.users
                .iter()
                .map(|u| (u.name().to_string(), u.method())),
        );
        lines.push(("all".to_string(), AuthMethod::ScramSha256));
        for (user, method) in &lines {
            let user = if user == "all" {
                user.clone()
            } else {
                hba_quote(user)
            };
            let method = method.hba_name();
            let _ = writeln!(hba, "local all {user} {method}");
            let _ = writeln!(hba, "host all {user} 127.0.0.1/32 {method}");
        }
        self.write_file("pg_hba.conf", &hba)?;
        let conf = self.data.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| ClusterError::io(format!("opening {}", conf.display()), e))?;
        file.write_all(b"\n# Added by tally-harness.\ninclude 'tally.conf'\n")
            .map_err(|e| ClusterError::io(format!("writing {}", conf.display()), e))?;
        self.write_settings(settings)
    }

    fn write_settings(&self, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let mut conf = String::from("# Written by tally-harness.\n");
        let fixed = ["port", "listen_addresses", "unix_socket_directories"];
        for (name, value) in settings {
            if !fixed.contains(&name.as_str()) {
                let _ = writeln!(conf, "{name} = {}", literal(value));
            }
        }
        let _ = writeln!(conf, "listen_addresses = '{HOST}'");
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(
            conf,
            "unix_socket_directories = {}",
            literal(&self.root.display().to_string())
        );
        self.write_file("tally.conf", &conf)
    }

    fn write_file(&self, name: &str, contents: &str) -> Result<(), ClusterError> {
        let path = self.data.join(name);
        fs::write(&path, contents)
            .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))?;
        self.run_as.chown(&path)
    }

    fn start_on_free_port(&mut self, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let listener =
                TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|e| {
                    ClusterError::NoFreePort {
                        detail: e.to_string(),
                    }
                })?;
            self.port = listener
                .local_addr()
                .map_err(|e| ClusterError::NoFreePort {
                    detail: e.to_string(),
                })?
                .port();
            drop(listener);
            self.write_settings(settings)?;
            let log_len = fs::metadata(&self.log).map_or(0, |m| m.len());
            match sys::run(self.pg_ctl("start"), "pg_ctl start") {
                Ok(_) => return Ok(()),
                Err(ClusterError::CommandFailed { output, .. }) => {
                    let log = fs::read(&self.log).unwrap_or_default();
                    let new_log =
                        String::from_utf8_lossy(log.get(log_len as usize..).unwrap_or_default());
                    if new_log.contains("could not bind") || new_log.contains("already in use") {
                        last = format!("port {} was taken", self.port);
                        continue;
                    }
                    let log_tail = self.log_tail();
                    if output.contains("did not start in time") {
                        return Err(ClusterError::NotReady {
                            timeout: self.start_timeout,
                            log_tail,
                        });
                    }
                    return Err(ClusterError::StartFailed { output, log_tail });
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::NoFreePort {
            detail: format!("{PORT_ATTEMPTS} attempts; last: {last}"),
        })
    }

    fn start_error(&self, e: ClusterError) -> ClusterError {
        match e {
            ClusterError::CommandFailed { output, .. } => {
                let log_tail = self.log_tail();
                if output.contains("did not start in time") {
                    ClusterError::NotReady {
                        timeout: self.start_timeout,
                        log_tail,
                    }
                } else {
                    ClusterError::StartFailed { output, log_tail }
                }
            }
            other => other,
        }
    }

    /// Waits until `select 1` answers over TCP.
    fn wait_ready(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let mut cmd = self.psql_command(SUPERUSER);
            cmd.args(["-d", "postgres", "-c", "select 1"]);
            if let Ok(out) = cmd.output() {
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    timeout: self.start_timeout,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn create_roles(&self) -> Result<(), ClusterError> {
        let mut sql = format!(
            "create database {} owner {};\n",
            ident(DATABASE),
            ident(SUPERUSER)
        );
        for user in &self.users {
            let encryption = match user.method() {
                AuthMethod::Md5 => "md5",
                _ => "scram-sha-256",
            };
            let _ = writeln!(sql, "set password_encryption = '{encryption}';");
            let _ = write!(sql, "create role {} login", ident(user.name()));
            if let Some(password) = user.password() {
                let _ = write!(sql, " password {}", literal(password));
            }
            sql.push_str(";\n");
        }
        sql.push_str("set password_encryption = 'scram-sha-256';\n");
        self.psql_in("postgres", &sql, &[]).map(drop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Runs `cmd` with `input` on its standard input; its output on success.
fn run_with_stdin(
    mut cmd: std::process::Command,
    input: &str,
    what: &str,
) -> Result<String, ClusterError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ClusterError::io(format!("running {what}"), e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_string();
    // Written from a thread, so a large output cannot block the input.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| ClusterError::io(format!("running {what}"), e))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(ClusterError::CommandFailed {
            command: what.to_string(),
            output: sys::output_text(&out),
        });
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

fn abbreviate(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(77).collect::<String>())
    } else {
        one_line
    }
}

/// A SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL quoted identifier.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn hba_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', ""))
    }
}

/// A libpq key=value value, quoted when needed.
fn kv_quote(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '\'', '\\', '=']) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Percent-encodes everything but the URL-safe unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Cluster>();
        send_sync::<TestDatabase>();
        send_sync::<ClusterError>();
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(kv_quote("plain"), "plain");
        assert_eq!(kv_quote("a b'c"), "'a b\\'c'");
        assert_eq!(kv_quote(""), "''");
        assert_eq!(percent_encode("md5-secret"), "md5-secret");
        assert_eq!(percent_encode("p@ss/w:rd"), "p%40ss%2Fw%3Ard");
    }

    #[test]
    fn the_superuser_cannot_be_replaced_and_defaults_can_be_left_out() {
        let b = Cluster::builder()
            .user(User::md5(SUPERUSER, "x"))
            .user(User::scram(MD5_USER, "other"));
        assert!(b.users.iter().all(|u| u.name() != SUPERUSER));
        let md5 = b.users.iter().find(|u| u.name() == MD5_USER).unwrap();
        assert_eq!(md5.method(), AuthMethod::ScramSha256);
        let b = b.without_default_users().user(User::trust("extra"));
        let names: Vec<&str> = b.users.iter().map(User::name).collect();
        assert_eq!(names, [MD5_USER, "extra"]);
    }
}
