//! Connection settings, from a `postgres://` URL or the `key=value` form.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::Error;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// A directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// Settings for a [`Connection`](super::Connection).
///
/// # Examples
///
/// ```
/// use tally_protocols::pg::Config;
///
/// let url: Config = "postgres://app:s%40cret@127.0.0.1:5433/orders?application_name=worker"
///     .parse()
///     .unwrap();
/// assert_eq!(url.get_user(), "app");
/// assert_eq!(url.get_port(), 5433);
///
/// let kv: Config = "host=/run/postgresql port=5432 user=app dbname='my db' connect_timeout=3"
///     .parse()
///     .unwrap();
/// assert_eq!(kv.get_dbname(), "my db");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) host: Host,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) dbname: Option<String>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) cancel_timeout: Duration,
    pub(crate) query_timeout: Option<Duration>,
    pub(crate) max_message_size: usize,
    pub(crate) statement_cache: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: Host::Tcp("localhost".to_owned()),
            port: 5432,
            user: std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned()),
            password: None,
            dbname: None,
            application_name: None,
            options: None,
            params: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            cancel_timeout: Duration::from_secs(5),
            query_timeout: None,
            max_message_size: 64 << 20,
            statement_cache: 64,
        }
    }
}

impl Config {
    /// The defaults: `localhost:5432`, the OS user, 10 s to connect, no query
    /// timeout, messages up to 64 MiB, 64 cached statements.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's host name or address (TCP).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Host::Tcp(host.into());
        self
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.host = Host::Unix(dir.into());
        self
    }

    /// The server's port (also part of the Unix socket's name).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The user to log in as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The password, for cleartext, MD5 and SCRAM-SHA-256 authentication.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database (default: the user's name).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// The `application_name` the server shows in `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Command-line options for the server session, such as `-c statement_timeout=5000`.
    pub fn options(mut self, options: impl Into<String>) -> Self {
        self.options = Some(options.into());
        self
    }

    /// Any other run-time parameter sent in the startup packet, such as
    /// `idle_in_transaction_session_timeout`. Set in the startup packet, it
    /// is the session's default, which `RESET ALL` and `DISCARD ALL` keep.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// How long connecting and logging in may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a CancelRequest may take to deliver (default 5 s).
    pub fn cancel_timeout(mut self, timeout: Duration) -> Self {
        self.cancel_timeout = timeout;
        self
    }

    /// A client-side limit on each query; past it the query is cancelled on
    /// the server (default: none).
    pub fn query_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The largest message accepted from the server (default 64 MiB); a
    /// larger one breaks the connection with a clear error.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(64);
        self
    }

    /// How many prepared statements the connection keeps (default 64; 0 uses
    /// the unnamed statement every time).
    pub fn statement_cache(mut self, statements: usize) -> Self {
        self.statement_cache = statements;
        self
    }

    /// The host.
    pub fn get_host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn get_port(&self) -> u16 {
        self.port
    }

    /// The user.
    pub fn get_user(&self) -> &str {
        &self.user
    }

    /// The database: the one set, or the user's name.
    pub fn get_dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// The application name, if set.
    pub fn get_application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The client-side query timeout, if set.
    pub fn get_query_timeout(&self) -> Option<Duration> {
        self.query_timeout
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), Error> {
        match key {
            "host" | "hostaddr" => {
                self.host = if value.starts_with('/') {
                    Host::Unix(value.into())
                } else {
                    Host::Tcp(value)
                }
            }
            "port" => {
                self.port = value
                    .parse()
                    .map_err(|_| Error::config(format!("port {value:?} is not a number")))?
            }
            "user" => self.user = value,
            "password" => self.password = Some(value),
            "dbname" => self.dbname = Some(value),
            "application_name" => self.application_name = Some(value),
            "options" => self.options = Some(value),
            "connect_timeout" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    Error::config(format!(
                        "connect_timeout {value:?} is not a number of seconds"
                    ))
                })?;
                self.connect_timeout = Duration::from_secs(seconds.max(1));
            }
            "sslmode" => match value.as_str() {
                "disable" | "allow" | "prefer" => {}
                other => {
                    return Err(Error::tls_required(format!(
                        "sslmode={other} asks for TLS; use sslmode=disable"
                    )))
                }
            },
            "client_encoding"
                if value.eq_ignore_ascii_case("utf8") || value.eq_ignore_ascii_case("utf-8") => {}
            "client_encoding" => {
                return Err(Error::config("only client_encoding=UTF8 is supported"))
            }
            // Anything else is a server run-time parameter for the startup packet.
            _ => self.params.push((key.to_owned(), value)),
        }
        Ok(())
    }

    fn parse_url(s: &str) -> Result<Config, Error> {
        let rest = s
            .strip_prefix("postgres://")
            .or_else(|| s.strip_prefix("postgresql://"))
            .ok_or_else(|| Error::config("a URL must start with postgres://"))?;
        let mut config = Config::default();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                config.user = percent_decode(user)?;
            }
            if let Some(password) = password {
                config.password = Some(percent_decode(password)?);
            }
        }
        if !hostport.is_empty() {
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| Error::config("an IPv6 host needs its closing ]"))?;
                (host.to_owned(), after.strip_prefix(':'))
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (percent_decode(h)?, Some(p)),
                    None => (percent_decode(hostport)?, None),
                }
            };
            if !host.is_empty() {
                config.set("host", host)?;
            }
            if let Some(port) = port {
                config.set("port", port.to_owned())?;
            }
        }
        if let Some(path) = path {
            if !path.is_empty() {
                config.dbname = Some(percent_decode(path)?);
            }
        }
        if let Some(query) = query {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| Error::config(format!("URL parameter {pair:?} has no value")))?;
                config.set(&percent_decode(key)?, percent_decode(value)?)?;
            }
        }
        Ok(config)
    }

    fn parse_key_value(s: &str) -> Result<Config, Error> {
        let mut config = Config::default();
        let mut chars = s.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') {
                return Err(Error::config(format!("{key:?} needs a value: key=value")));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'\'') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(c) => value.push(c),
                            None => return Err(Error::config("a value ends in a lone backslash")),
                        },
                        Some('\'') => break,
                        Some(c) => value.push(c),
                        None => return Err(Error::config("a quoted value has no closing quote")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        match chars.next() {
                            Some(e) => value.push(e),
                            None => return Err(Error::config("a value ends in a lone backslash")),
                        }
                    } else {
                        value.push(c);
                    }
                }
            }
            config.set(&key, value)?;
        }
        Ok(config)
    }
}

impl FromStr for Config {
    type Err = Error;

    /// Parses a `postgres://` (or `postgresql://`) URL, or the `key=value` form.
    fn from_str(s: &str) -> Result<Config, Error> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Config::parse_url(s)
        } else {
            Config::parse_key_value(s)
        }
    }
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::config(format!("bad percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("{s:?} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_every_part_decoded() {
        let c: Config = "postgres://me:p%40ss%3Aword@db.example:6000/my%20db?application_name=app&options=-c%20x%3D1&idle_in_transaction_session_timeout=5000"
            .parse()
            .unwrap();
        assert_eq!(c.host, Host::Tcp("db.example".into()));
        assert_eq!(c.port, 6000);
        assert_eq!(c.user, "me");
        assert_eq!(c.password.as_deref(), Some("p@ss:word"));
        assert_eq!(c.dbname.as_deref(), Some("my db"));
        assert_eq!(c.application_name.as_deref(), Some("app"));
        assert_eq!(c.options.as_deref(), Some("-c x=1"));
        assert_eq!(
            c.params,
            vec![("idle_in_transaction_session_timeout".into(), "5000".into())]
        );
    }

    #[test]
    fn a_url_can_name_a_socket_directory_or_an_ipv6_host() {
        let c: Config = "postgres://u@%2Ftmp%2Fpg:5999/d".parse().unwrap();
        assert_eq!(c.host, Host::Unix("/tmp/pg".into()));
        assert_eq!(c.port, 5999);
        let c: Config = "postgres://u@[::1]:5433/d".parse().unwrap();
        assert_eq!(c.host, Host::Tcp("::1".into()));
        assert_eq!(c.port, 5433);
        let c: Config = "postgresql:///d?host=/var/run/postgresql".parse().unwrap();
        assert_eq!(c.host, Host::Unix("/var/run/postgresql".into()));
    }

    #[test]
    fn the_key_value_form_takes_quotes_and_escapes() {
        let c: Config = r"host=localhost port = 5433 user=bob password='it\'s secret' dbname=a\ b"
            .parse()
            .unwrap();
        assert_eq!(c.port, 5433);
        assert_eq!(c.password.as_deref(), Some("it's secret"));
        assert_eq!(c.dbname.as_deref(), Some("a b"));
    }

    #[test]
    fn bad_strings_give_config_errors() {
        for bad in [
            "postgres://u@h:notaport/d",
            "postgres://u@h/d?novalue",
            "host",
            "password='unterminated",
            "postgres://u@h/%zz",
        ] {
            let e = bad.parse::<Config>().unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let e = "postgres://u@h/d?sslmode=require"
            .parse::<Config>()
            .unwrap_err();
        assert!(e.is_tls_required(), "{e}");
    }
}
