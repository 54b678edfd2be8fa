//! The throwaway cluster against a real PostgreSQL server: start, roles and
//! their authentication, activity and termination, restart, stop, the
//! watchdog after `SIGKILL`, and the cleanup of stale clusters.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_harness::cluster::{
    Cluster, ClusterError, TestDatabase, User, CLEAR_PASSWORD, CLEAR_USER, MD5_PASSWORD, MD5_USER,
    SCRAM_PASSWORD, SCRAM_USER, SUPERUSER,
};

/// Set in a re-run of this binary to make [`child_helper`] start a cluster.
const CHILD_ENV: &str = "TALLY_HARNESS_CLUSTER_CHILD";
const CHILD_BASE_ENV: &str = "TALLY_HARNESS_CLUSTER_CHILD_BASE";

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A base directory of a test's own, so its stale clusters are its own.
struct Base(PathBuf);

impl Base {
    fn new(name: &str) -> Base {
        let dir = std::env::temp_dir().join(format!("tally-hz-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Base(dir)
    }

    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn starts_and_answers_select_1_with_the_test_settings() {
    let cluster = Cluster::start().unwrap();
    assert_eq!(cluster.psql_query("select 1").unwrap(), "1");
    assert_eq!(cluster.host(), "127.0.0.1");
    assert!(accepts_connections(cluster.port()));
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(cluster.log_path().is_file());
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    assert!(socket.exists(), "no socket at {}", socket.display());
    let name = cluster
        .socket_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("tally-pg-{}-", std::process::id())),
        "{name}"
    );

    let show = |setting: &str| cluster.psql_query(&format!("show {setting}")).unwrap();
    assert_eq!(show("max_connections"), "200");
    assert_eq!(show("fsync"), "off");
    assert_eq!(show("synchronous_commit"), "off");
    assert_eq!(show("full_page_writes"), "off");
    assert_eq!(show("listen_addresses"), "127.0.0.1");
    assert_eq!(show("server_encoding"), "UTF8");
    assert_eq!(show("lc_collate"), "C");
    assert_eq!(
        cluster
            .psql_query("select pg_get_userbyid(datdba) from pg_database where datname = 'tally'")
            .unwrap(),
        SUPERUSER
    );
    // Several statements, one line each; a failing one is an error.
    assert_eq!(
        cluster.psql_query("select 1, 'a'; select 2").unwrap(),
        "1|a\n2"
    );
    let err = cluster
        .psql_query("select * from no_such_table")
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::CommandFailed { output, .. } if output.contains("no_such_table")),
        "{err}"
    );

    let port = cluster.port();
    assert_eq!(
        cluster.url(MD5_USER),
        format!("postgres://tally_md5:md5-secret@127.0.0.1:{port}/tally")
    );
    assert_eq!(
        cluster.url(SUPERUSER),
        format!("postgres://tally@127.0.0.1:{port}/tally")
    );
    assert_eq!(
        cluster.key_value(SCRAM_USER),
        format!("host=127.0.0.1 port={port} user=tally_scram password=scram-secret dbname=tally")
    );
    cluster.stop().unwrap();
}

fn login(
    cluster: &Cluster,
    user: &str,
    password: Option<&str>,
    conninfo: Option<&str>,
) -> Result<String, String> {
    let mut cmd = cluster.psql_command(user);
    cmd.env_remove("PGPASSWORD");
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    if let Some(conninfo) = conninfo {
        cmd.arg("-d").arg(conninfo);
    }
    let out = cmd.args(["-c", "select current_user"]).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn each_password_role_logs_in_with_its_password_only_and_by_its_method() {
    let cluster = Cluster::start().unwrap();
    let roles = [
        (MD5_USER, MD5_PASSWORD, "md5", "md5"),
        (
            SCRAM_USER,
            SCRAM_PASSWORD,
            "scram-sha-256",
            "SCRAM-SHA-256$",
        ),
        (CLEAR_USER, CLEAR_PASSWORD, "password", "SCRAM-SHA-256$"),
    ];
    for (user, password, method, stored) in roles {
        assert_eq!(cluster.password(user), Some(password));
        assert_eq!(
            login(&cluster, user, Some(password), None).as_deref(),
            Ok(user)
        );
        // Over the Unix socket too.
        let socket = cluster.socket_key_value(user);
        assert_eq!(
            login(&cluster, user, None, Some(&socket)).as_deref(),
            Ok(user),
            "{socket}"
        );
        let wrong = login(&cluster, user, Some("wrong"), None).unwrap_err();
        assert!(
            wrong.contains("password authentication failed"),
            "{user}: {wrong}"
        );
        let none = login(&cluster, user, None, None).unwrap_err();
        assert!(none.contains("password"), "{user}: {none}");

        let rule = cluster
            .psql_query(&format!(
                "select string_agg(distinct auth_method, ',') from pg_hba_file_rules \
                 where '{user}' = any(user_name)"
            ))
            .unwrap();
        assert_eq!(rule, method);
        let hash = cluster
            .psql_query(&format!(
                "select left(rolpassword, {}) from pg_authid where rolname = '{user}'",
                stored.len()
            ))
            .unwrap();
        assert_eq!(hash, stored, "{user}");
    }
    // The superuser needs no password; an unknown role gets nowhere.
    assert_eq!(
        login(&cluster, SUPERUSER, None, None).as_deref(),
        Ok(SUPERUSER)
    );
    let unknown = login(&cluster, "nobody", Some("x"), None).unwrap_err();
    assert!(unknown.contains("nobody"), "{unknown}");
    assert_eq!(
        cluster.psql_query("show password_encryption").unwrap(),
        "scram-sha-256"
    );
    cluster.stop().unwrap();
}

#[test]
fn builder_roles_replace_the_defaults() {
    let cluster = Cluster::builder()
        .without_default_users()
        .user(User::md5("only_md5", "pw with 'quote"))
        .setting("max_connections", "50")
        .start()
        .unwrap();
    assert_eq!(cluster.psql_query("show max_connections").unwrap(), "50");
    assert_eq!(
        cluster
            .psql_query("select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'tally%' or rolname like 'only%'")
            .unwrap(),
        "only_md5,tally"
    );
    assert_eq!(
        login(&cluster, "only_md5", Some("pw with 'quote"), None).as_deref(),
        Ok("only_md5")
    );
    let kv = cluster.key_value("only_md5");
    assert!(kv.contains("password='pw with \\'quote'"), "{kv}");
    assert_eq!(
        login(&cluster, "only_md5", None, Some(&kv)).as_deref(),
        Ok("only_md5")
    );
    cluster.stop().unwrap();
}

fn spawn_sleeper(cluster: &Cluster, app: &str) -> Child {
    let mut cmd = cluster.psql_command(SCRAM_USER);
    cmd.env("PGAPPNAME", app)
        .args(["-c", "select pg_sleep(30)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

#[test]
fn activity_sees_a_session_and_terminating_it_ends_the_client() {
    let cluster = Cluster::start().unwrap();
    let app = format!("probe_{}", fastrand::u32(..));
    let mut sleeper = spawn_sleeper(&cluster, &app);
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = cluster.activity(&app).unwrap();
            seen.iter().any(|a| a.query.contains("pg_sleep"))
        }),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    let session = &seen[0];
    assert_eq!(session.application_name, app);
    assert_eq!(session.state, "active");
    assert_eq!(session.query, "select pg_sleep(30)");
    assert!(session.pid > 0);
    assert!(session
        .xact_age
        .is_some_and(|age| age < Duration::from_secs(30)));
    assert!(cluster.activity("no_such_application").unwrap().is_empty());

    assert_eq!(cluster.terminate_backends(&app).unwrap(), 1);
    let status = wait_child(&mut sleeper, Duration::from_secs(10)).expect("psql still running");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(sleeper.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("terminat"), "{stderr}");
    assert!(wait_until(Duration::from_secs(5), || cluster
        .activity(&app)
        .unwrap()
        .is_empty()));
    assert_eq!(cluster.terminate_backends(&app).unwrap(), 0);

    // One backend by pid.
    let mut other = spawn_sleeper(&cluster, &app);
    let mut pid = None;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = cluster.activity(&app).unwrap().first().map(|a| a.pid);
        pid.is_some()
    }));
    assert!(cluster.terminate_backend(pid.unwrap()).unwrap());
    let status = wait_child(&mut other, Duration::from_secs(10)).expect("psql still running");
    assert!(!status.success());
    assert!(wait_until(Duration::from_secs(5), || !cluster
        .terminate_backend(pid.unwrap())
        .unwrap()));
    cluster.stop().unwrap();
}

#[test]
fn restart_keeps_the_port_cuts_sessions_and_accepts_connections_again() {
    let cluster = Cluster::start().unwrap();
    let port = cluster.port();
    let started = cluster
        .psql_query("select pg_postmaster_start_time()")
        .unwrap();
    cluster.create_database("kept").unwrap();
    let mut sleeper = spawn_sleeper(&cluster, "restart_probe");
    assert!(wait_until(Duration::from_secs(10), || !cluster
        .activity("restart_probe")
        .unwrap()
        .is_empty()));

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert!(accepts_connections(port));
    assert_eq!(cluster.psql_query("select 1").unwrap(), "1");
    assert_ne!(
        cluster
            .psql_query("select pg_postmaster_start_time()")
            .unwrap(),
        started
    );
    let status = wait_child(&mut sleeper, Duration::from_secs(10)).expect("psql still running");
    assert!(!status.success());
    // The database created before survives, and a role reaches it by URL.
    let mut cmd = cluster.psql_command(SCRAM_USER);
    let out = cmd
        .arg("-d")
        .arg(cluster.url_for(SCRAM_USER, "kept"))
        .args(["-c", "select current_database()"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept");
    cluster.stop().unwrap();
}

#[test]
fn stop_removes_the_directory_and_the_port_refuses_connections() {
    let cluster = Cluster::start().unwrap();
    let dir = cluster.socket_dir().to_path_buf();
    let port = cluster.port();
    assert!(dir.is_dir());
    cluster.stop().unwrap();
    assert!(!dir.exists());
    assert!(!accepts_connections(port));

    // Dropping does the same.
    let cluster = Cluster::start().unwrap();
    let dir = cluster.socket_dir().to_path_buf();
    let port = cluster.port();
    drop(cluster);
    assert!(!dir.exists());
    assert!(!accepts_connections(port));
}

/// Not a test of its own: run by the tests below in a child process (with
/// [`CHILD_ENV`] set) to start a cluster, report it and wait to be killed.
#[test]
fn child_helper() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut builder = Cluster::builder().watchdog(mode == "watchdog");
    if let Ok(base) = std::env::var(CHILD_BASE_ENV) {
        builder = builder.base_dir(base);
    }
    let cluster = builder.start().unwrap();
    println!(
        "READY {} {}",
        cluster.port(),
        cluster.socket_dir().display()
    );
    std::thread::sleep(Duration::from_secs(60));
    drop(cluster);
}

/// Starts [`child_helper`] in a process group of its own; returns it with
/// its cluster's port and directory.
fn spawn_child(mode: &str, base: &Path) -> (Child, u16, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_helper", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(CHILD_BASE_ENV, base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest may have printed `test child_helper ... ` on the same line.
        if let Some((_, rest)) = line.split_once("READY ") {
            let (port, dir) = rest.split_once(' ').unwrap();
            return (child, port.parse().unwrap(), PathBuf::from(dir));
        }
    }
    let _ = child.kill();
    panic!(
        "the child exited without starting its cluster: {:?}",
        child.wait()
    );
}

/// `SIGKILL` to the child's whole process group.
fn kill_group(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

#[test]
fn the_watchdog_stops_the_server_of_a_killed_process_and_removes_its_directory() {
    let base = Base::new("watchdog");
    let (mut child, port, dir) = spawn_child("watchdog", &base.0);
    assert!(dir.starts_with(&base.0), "{}", dir.display());
    assert!(accepts_connections(port));
    assert!(dir.is_dir());

    kill_group(&mut child);
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || !accepts_connections(port)),
        "the server still accepts connections 5 s after its process was killed"
    );
    let stopped_after = killed.elapsed();
    assert!(
        wait_until(Duration::from_secs(5), || !dir.exists()),
        "{} still exists",
        dir.display()
    );
    assert!(base.entries().is_empty(), "{:?}", base.entries());
    eprintln!("server gone {stopped_after:?} after the kill");
}

#[test]
fn a_stale_directory_of_a_dead_process_is_removed_at_the_next_start() {
    let base = Base::new("stale");
    // A pid that has just exited.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let fake = base.0.join(format!("tally-pg-{pid}-0-deadbeef"));
    std::fs::create_dir_all(fake.join("data")).unwrap();
    std::fs::write(fake.join("server.log"), "old").unwrap();
    // Not a cluster directory, or one of a live process: left alone.
    let other = base.0.join("not-tally");
    std::fs::create_dir(&other).unwrap();
    let alive = base
        .0
        .join(format!("tally-pg-{}-999-cafe", std::process::id()));
    std::fs::create_dir(&alive).unwrap();

    let cluster = Cluster::builder().base_dir(&base.0).start().unwrap();
    assert!(!fake.exists());
    assert!(other.exists());
    assert!(alive.exists());
    assert!(cluster.socket_dir().starts_with(&base.0));
    cluster.stop().unwrap();
}

#[test]
fn a_server_left_running_by_a_dead_process_is_stopped_at_the_next_start() {
    let base = Base::new("stale-running");
    let (mut child, port, dir) = spawn_child("no-watchdog", &base.0);
    kill_group(&mut child);
    // Without a watchdog, the server outlives its process...
    std::thread::sleep(Duration::from_millis(700));
    assert!(accepts_connections(port));
    assert!(dir.is_dir());

    // ...until the next start cleans it up.
    let cluster = Cluster::builder().base_dir(&base.0).start().unwrap();
    assert!(!dir.exists());
    assert!(!accepts_connections(port));
    assert_eq!(cluster.psql_query("select 1").unwrap(), "1");
    cluster.stop().unwrap();
    assert!(base.entries().is_empty(), "{:?}", base.entries());
}

#[test]
fn a_test_database_on_an_existing_server_is_fresh_and_dropped_at_stop() {
    let cluster = Cluster::start().unwrap();
    let db = TestDatabase::create_on(&cluster.url(SUPERUSER)).unwrap();
    let name = db.name().to_string();
    assert!(
        name.starts_with(&format!("tally_test_{}_", std::process::id())),
        "{name}"
    );
    assert!(db.cluster().is_none());
    assert_eq!(
        db.url(),
        format!("postgres://tally@127.0.0.1:{}/{name}", cluster.port())
    );
    assert_eq!(db.psql_query("select current_database()").unwrap(), name);
    db.psql_query("create table t (x int); insert into t values (7)")
        .unwrap();
    assert_eq!(db.psql_query("select x from t").unwrap(), "7");
    let exists = |name: &str| {
        cluster
            .psql_query(&format!(
                "select count(*) from pg_database where datname = '{name}'"
            ))
            .unwrap()
    };
    assert_eq!(exists(&name), "1");
    // A second one is another database.
    let db2 = TestDatabase::create_on(&cluster.key_value(SUPERUSER)).unwrap();
    assert_ne!(db2.name(), name);
    assert_eq!(
        db2.psql_query("select count(*) from pg_tables where tablename = 't'")
            .unwrap(),
        "0"
    );
    db.stop().unwrap();
    assert_eq!(exists(&name), "0");
    let name2 = db2.name().to_string();
    drop(db2);
    assert_eq!(exists(&name2), "0");
    cluster.stop().unwrap();
}

#[test]
fn failures_are_typed_and_clean_up_after_themselves() {
    let err = Cluster::builder()
        .bin_dir("/nonexistent/bin")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::BinariesNotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`postgresql`"), "{err}");

    let base = Base::new("bad-setting");
    let err = Cluster::builder()
        .base_dir(&base.0)
        .setting("shared_buffers", "lots")
        .start()
        .unwrap_err();
    match &err {
        ClusterError::StartFailed { log_tail, .. } => {
            assert!(log_tail.contains("shared_buffers"), "{log_tail}")
        }
        other => panic!("{other}"),
    }
    assert!(base.entries().is_empty(), "{:?}", base.entries());
}

#[test]
fn from_env_or_start_gives_a_working_database() {
    let db = Cluster::from_env_or_start().unwrap();
    assert_eq!(db.psql_query("select 1").unwrap(), "1");
    assert_eq!(
        db.psql_query("select current_database()").unwrap(),
        db.name()
    );
    let external = std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty());
    assert_eq!(db.cluster().is_none(), external);
    if let Some(cluster) = db.cluster() {
        assert_eq!(db.url(), cluster.url(SUPERUSER));
    }
    db.stop().unwrap();
}
