//! Authentication at startup: trust, cleartext password, MD5 and
//! SCRAM-SHA-256 (on postgres-protocol's SCRAM), and the errors a refused
//! session gives, TLS demands among them.

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::config::Config;
use super::connection::Connection;
use super::error::{DbError, Error};

impl Connection {
    pub(super) async fn authenticate(&mut self, config: &Config) -> Result<(), Error> {
        let password = || {
            config
                .password
                .as_deref()
                .ok_or_else(|| Error::auth("the server asks for a password and none was given"))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.recv().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.write_buf)
                        .map_err(|e| Error::auth(e.to_string()))?;
                    self.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(config.user.as_bytes(), password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(|e| Error::auth(e.to_string()))?;
                    self.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offered = Vec::new();
                    let mut mechanisms = body.mechanisms();
                    while let Some(m) = mechanisms.next().map_err(|e| self.violation(e.to_string()))? {
                        offered.push(m.to_owned());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::auth(format!(
                            "the server offers only {offered:?}; this client speaks SCRAM-SHA-256"
                        )));
                    }
                    let exchange = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, exchange.message(), &mut self.write_buf)
                        .map_err(|e| Error::auth(e.to_string()))?;
                    scram = Some(exchange);
                    self.flush().await?;
                }
                Message::AuthenticationSaslContinue(body) => {
                    let exchange = scram
                        .as_mut()
                        .ok_or_else(|| self.violation("SASL continue before SASL start".into()))?;
                    exchange
                        .update(body.data())
                        .map_err(|e| Error::auth(format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(exchange.message(), &mut self.write_buf)
                        .map_err(|e| Error::auth(e.to_string()))?;
                    self.flush().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let exchange = scram
                        .as_mut()
                        .ok_or_else(|| self.violation("SASL final before SASL start".into()))?;
                    exchange
                        .finish(body.data())
                        .map_err(|e| Error::auth(format!("the server's SCRAM signature did not verify: {e}")))?;
                }
                Message::ErrorResponse(body) => {
                    let error = DbError::parse(body.fields()).map_err(|e| self.violation(e.to_string()))?;
                    return Err(self.startup_failed(error));
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationGssContinue(_)
                | Message::AuthenticationSspi => {
                    return Err(Error::auth(
                        "the server asks for Kerberos, GSSAPI, SSPI or SCM credentials, which this client does not speak",
                    ))
                }
                other => return Err(self.unexpected(&other, "authenticating")),
            }
        }
    }

    pub(super) fn startup_failed(&mut self, error: DbError) -> Error {
        // A non-TLS session that no pg_hba.conf line admits: the server wants
        // TLS (PostgreSQL 14+ says "no encryption", older ones "SSL off").
        let tls = error.code == "28000"
            && error.message.contains("no pg_hba.conf entry")
            && (error.message.contains("no encryption") || error.message.contains("SSL off"));
        let broken = self.break_with(
            format!("the server refused the session: {error}"),
            None,
            Some(error.clone()),
        );
        if tls {
            Error::tls_required(error.message)
        } else if error.code.starts_with("28") {
            Error::db(error)
        } else {
            broken
        }
    }
}
