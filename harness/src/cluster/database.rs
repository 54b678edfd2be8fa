//! A database for one test: on the server of `DATABASE_URL`, or on a cluster
//! of its own.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::sys::Bins;
use super::{ident, run_with_stdin, Cluster, ClusterError, DATABASE, SUPERUSER};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database of a test's own, from [`Cluster::from_env_or_start`]: either a
/// fresh database created on an existing server, or a whole [`Cluster`].
///
/// Stop it with [`stop`](Self::stop) (dropping it does the same, ignoring
/// errors): the created database is dropped, or the cluster stopped.
#[derive(Debug)]
pub struct TestDatabase {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Cluster(Cluster),
    External(External),
}

#[derive(Debug)]
struct External {
    /// The URL it was created through.
    admin_url: String,
    /// The URL of the new database.
    url: String,
    name: String,
    dropped: bool,
}

impl TestDatabase {
    pub(crate) fn from_cluster(cluster: Cluster) -> Self {
        TestDatabase {
            inner: Inner::Cluster(cluster),
        }
    }

    /// Creates a fresh database `tally_test_<pid>_<n>` on the server of
    /// `admin_url` (a `postgres://` URL or a `key=value` string whose role may
    /// create databases), with `psql`. The `PG*` environment variables
    /// (`PGPASSWORD`, `PGSSLMODE`, ...) apply.
    ///
    /// # Errors
    ///
    /// [`ClusterError::BinariesNotFound`] without `psql`,
    /// [`ClusterError::CommandFailed`] when the database cannot be created.
    pub fn create_on(admin_url: &str) -> Result<TestDatabase, ClusterError> {
        let name = format!(
            "tally_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        psql_url(admin_url, &format!("create database {}", ident(&name)))?;
        Ok(TestDatabase {
            inner: Inner::External(External {
                admin_url: admin_url.to_string(),
                url: with_database(admin_url, &name),
                name,
                dropped: false,
            }),
        })
    }

    /// The connection string of the database: a URL (or `key=value` string
    /// when `DATABASE_URL` was one); as [`SUPERUSER`] on a cluster of its own.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::Cluster(cluster) => cluster.url(SUPERUSER),
            Inner::External(ext) => ext.url.clone(),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        match &self.inner {
            Inner::Cluster(_) => DATABASE,
            Inner::External(ext) => &ext.name,
        }
    }

    /// The cluster, when one was started rather than `DATABASE_URL` used.
    pub fn cluster(&self) -> Option<&Cluster> {
        match &self.inner {
            Inner::Cluster(cluster) => Some(cluster),
            Inner::External(_) => None,
        }
    }

    /// Runs `sql` in the database with `psql`, as
    /// [`Cluster::psql_query`] does.
    ///
    /// # Errors
    ///
    /// [`ClusterError::CommandFailed`] when a statement fails.
    pub fn psql_query(&self, sql: &str) -> Result<String, ClusterError> {
        match &self.inner {
            Inner::Cluster(cluster) => cluster.psql_query(sql),
            Inner::External(ext) => psql_url(&ext.url, sql),
        }
    }

    /// Drops the created database (`with (force)`: its connections are cut),
    /// or stops the cluster.
    ///
    /// # Errors
    ///
    /// As [`Cluster::stop`], or [`ClusterError::CommandFailed`] when the
    /// database cannot be dropped.
    pub fn stop(self) -> Result<(), ClusterError> {
        match self.inner {
            Inner::Cluster(cluster) => cluster.stop(),
            Inner::External(mut ext) => ext.drop_database(),
        }
    }
}

impl External {
    fn drop_database(&mut self) -> Result<(), ClusterError> {
        if self.dropped {
            return Ok(());
        }
        self.dropped = true;
        psql_url(
            &self.admin_url,
            &format!("drop database if exists {} with (force)", ident(&self.name)),
        )
        .map(drop)
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.drop_database();
    }
}

fn psql_url(url: &str, sql: &str) -> Result<String, ClusterError> {
    let psql = Bins::psql_anywhere();
    let mut cmd = Command::new(&psql);
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-w",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        "-",
    ])
    .arg("-d")
    .arg(url)
    .env("LC_ALL", "C")
    .stdin(Stdio::piped());
    match run_with_stdin(cmd, sql, "psql") {
        Err(ClusterError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ClusterError::BinariesNotFound {
                searched: format!("{} (psql)", psql.display()),
            })
        }
        other => other,
    }
}

impl Bins {
    /// `psql` from the server binaries' directory when found, else from `PATH`.
    fn psql_anywhere() -> std::path::PathBuf {
        Bins::find(None).map_or_else(|_| "psql".into(), |b| b.psql)
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // key=value: a later keyword wins.
        return format!("{url} dbname={database}");
    };
    let after = scheme_end + 3;
    let tail = &url[after..];
    // The authority ends at the first `/` or `?` after any `user:password@`.
    let userinfo_end = tail
        .find(['/', '?'])
        .map_or(tail, |i| &tail[..i])
        .rfind('@')
        .map_or(0, |i| i + 1);
    let authority_end = tail[userinfo_end..]
        .find(['/', '?'])
        .map_or(tail.len(), |i| userinfo_end + i);
    let rest = &tail[authority_end..];
    let query = rest.find('?').map_or("", |i| &rest[i..]);
    format!(
        "{}{}/{}{}",
        &url[..after],
        &tail[..authority_end],
        super::percent_encode(database),
        query
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/old?sslmode=disable", "new"),
            "postgres://u:p@h:5432/new?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "new"), "postgresql://h/new");
        assert_eq!(
            with_database("postgres://u@h:1?x=1", "new"),
            "postgres://u@h:1/new?x=1"
        );
        assert_eq!(
            with_database("host=h user=u", "new"),
            "host=h user=u dbname=new"
        );
    }
}
