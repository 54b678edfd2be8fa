//! Enrichment: `GET /v1/symbols/{symbol}` through the HTTP pool, with
//! bounded retries of transient failures inside the event's deadline.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tally::pool::http::HttpPool;
use tally::protocols::http1::{encode_path_segment, Request, Url};

/// What the enrichment service says of a symbol.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Enrichment {
    /// The company's name.
    pub company_name: String,
    /// Its sector.
    pub sector: String,
    /// Its market capitalisation, when known.
    pub market_cap: Option<f64>,
}

/// Why an event could not be enriched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrichError {
    /// A 4xx, or a body that is not the expected JSON: retrying will not help.
    Permanent(String),
    /// Transient failures until the attempts or the deadline ran out.
    Exhausted(String),
}

impl std::fmt::Display for EnrichError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrichError::Permanent(m) => write!(f, "enrichment refused: {m}"),
            EnrichError::Exhausted(m) => write!(f, "enrichment failed after retries: {m}"),
        }
    }
}

impl std::error::Error for EnrichError {}

/// Asks the enrichment service, through a pool.
#[derive(Clone, Debug)]
pub struct Enricher {
    pool: HttpPool,
    base: Url,
    attempt_timeout: Duration,
    attempts: u32,
}

impl Enricher {
    /// An enricher for the service at `base` (such as `http://127.0.0.1:8080`).
    pub fn new(pool: HttpPool, base: Url, attempt_timeout: Duration, attempts: u32) -> Self {
        Enricher {
            pool,
            base,
            attempt_timeout,
            attempts: attempts.max(1),
        }
    }

    /// Enriches one symbol, retrying transient failures (connect errors,
    /// resets, timeouts, 5xx, malformed responses) with backoff, never past
    /// `deadline`.
    ///
    /// # Errors
    ///
    /// A permanent refusal, or transient failures to the end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons an exchange in flight to the pool's reclaimer.
    pub async fn enrich(&self, symbol: &str, deadline: Instant) -> Result<Enrichment, EnrichError> {
        let url = self
            .base
            .join_segment("v1")
            .join_segment("symbols")
            .join_segment(&encode_path_segment(symbol));
        let request = Request::get(url.target()).header("Accept", "application/json");
        let mut pause = Duration::from_millis(5);
        let mut last = String::from("no attempt was made before the deadline");
        for attempt in 1..=self.attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let limit = self.attempt_timeout.min(left);
            match self.pool.request_within(&url, &request, limit).await {
                Ok((head, body)) => match head.status {
                    200 => {
                        return serde_json::from_slice::<Enrichment>(&body).map_err(|e| {
                            EnrichError::Permanent(format!(
                                "the body is not the expected JSON: {e}"
                            ))
                        })
                    }
                    400..=499 => {
                        return Err(EnrichError::Permanent(format!(
                            "the service answered {}",
                            head.status
                        )))
                    }
                    status => last = format!("the service answered {status}"),
                },
                Err(e) if e.is_transient() => last = e.to_string(),
                Err(e) => return Err(EnrichError::Permanent(e.to_string())),
            }
            if attempt < self.attempts {
                let left = deadline.saturating_duration_since(Instant::now());
                let jitter = Duration::from_micros(fastrand::u64(0..=pause.as_micros() as u64));
                tally::sleep((pause + jitter).min(left)).await;
                pause = pause.saturating_mul(2);
            }
        }
        Err(EnrichError::Exhausted(last))
    }
}
