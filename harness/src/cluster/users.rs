//! The login roles a cluster is created with, and how each authenticates.

/// The superuser, authenticated with `trust` (no password), owner of
/// [`DATABASE`]. The harness's own administration goes through it.
pub const SUPERUSER: &str = "tally";
/// The database every cluster is created with, owned by [`SUPERUSER`].
pub const DATABASE: &str = "tally";
/// A role authenticated with `md5`, its password stored as an MD5 hash.
pub const MD5_USER: &str = "tally_md5";
/// The password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5-secret";
/// A role authenticated with `scram-sha-256`.
pub const SCRAM_USER: &str = "tally_scram";
/// The password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "scram-secret";
/// A role authenticated with `password` (the password sent in clear text).
pub const CLEAR_USER: &str = "tally_clear";
/// The password of [`CLEAR_USER`].
pub const CLEAR_PASSWORD: &str = "clear-secret";

/// A `pg_hba.conf` authentication method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `trust`: no password asked.
    Trust,
    /// `md5`: an MD5 challenge (the password is stored as an MD5 hash).
    Md5,
    /// `scram-sha-256`: SCRAM (the password is stored as a SCRAM verifier).
    ScramSha256,
    /// `password`: the password sent in clear text.
    Password,
}

impl AuthMethod {
    /// The method's name in `pg_hba.conf`.
    pub fn hba_name(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Password => "password",
        }
    }
}

/// A login role of the cluster: its name, password and authentication method
/// (on both the loopback TCP address and the Unix socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    name: String,
    password: Option<String>,
    method: AuthMethod,
}

impl User {
    /// A role that logs in without a password (`trust`).
    pub fn trust(name: impl Into<String>) -> Self {
        User {
            name: name.into(),
            password: None,
            method: AuthMethod::Trust,
        }
    }

    /// A role authenticated with `md5` (its password stored as an MD5 hash).
    pub fn md5(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_password(name, password, AuthMethod::Md5)
    }

    /// A role authenticated with `scram-sha-256`.
    pub fn scram(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_password(name, password, AuthMethod::ScramSha256)
    }

    /// A role authenticated with `password` (clear text on the wire).
    pub fn cleartext(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_password(name, password, AuthMethod::Password)
    }

    fn with_password(
        name: impl Into<String>,
        password: impl Into<String>,
        method: AuthMethod,
    ) -> Self {
        User {
            name: name.into(),
            password: Some(password.into()),
            method,
        }
    }

    /// The default password roles: [`MD5_USER`], [`SCRAM_USER`] and
    /// [`CLEAR_USER`] with their passwords. ([`SUPERUSER`] is always there.)
    pub fn defaults() -> Vec<User> {
        vec![
            User::md5(MD5_USER, MD5_PASSWORD),
            User::scram(SCRAM_USER, SCRAM_PASSWORD),
            User::cleartext(CLEAR_USER, CLEAR_PASSWORD),
        ]
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role's password, if it has one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// How the role authenticates.
    pub fn method(&self) -> AuthMethod {
        self.method
    }
}
