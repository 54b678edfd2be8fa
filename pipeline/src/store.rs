//! Storage: one transaction per event, BEGIN, INSERT and COMMIT pipelined in
//! one round trip on a pooled connection, ended explicitly on every path.

use std::time::{Duration, Instant, SystemTime};

use tally::pool::pg::PgPool;
use tally::protocols::pg::{Jsonb, Pipeline, StepResult};

/// The table, as WORKLOAD.md gives it.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS market_events (
  id         bigserial PRIMARY KEY,
  event_id   text UNIQUE NOT NULL,
  symbol     text NOT NULL,
  price      double precision NOT NULL,
  volume     bigint NOT NULL,
  ts         timestamptz NOT NULL,
  enrichment jsonb NOT NULL
)";

const INSERT: &str = "INSERT INTO market_events (event_id, symbol, price, volume, ts, enrichment) \
                      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING";

/// One row to store.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// The event's stable id.
    pub event_id: &'a str,
    /// The symbol.
    pub symbol: &'a str,
    /// The price.
    pub price: f64,
    /// The volume.
    pub volume: i64,
    /// The event's time.
    pub ts: SystemTime,
    /// The enrichment, as JSON text.
    pub enrichment: &'a str,
}

/// Why an event could not be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// What went wrong, last.
    pub reason: String,
    /// Whether its commit may have landed (the connection broke after COMMIT was sent).
    pub maybe_committed: bool,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for StoreError {}

/// Stores one row in its own transaction, retrying transient failures
/// (serialization failure, deadlock, lost connection, admin shutdown) on a
/// fresh lease, never past `deadline`. Returns whether a new row was inserted
/// (`false`: it was already there, from an earlier run or an earlier attempt).
///
/// # Errors
///
/// A permanent database error, or transient ones to the end.
///
/// # Cancel safety
///
/// Dropping the future abandons the lease to the pool's reclaimer, which
/// rolls back.
pub async fn store(
    pool: &PgPool,
    row: Row<'_>,
    attempts: u32,
    deadline: Instant,
) -> Result<bool, StoreError> {
    let mut tx = Pipeline::new();
    let built = tx
        .execute("BEGIN", &[])
        .and_then(|p| {
            p.execute(
                INSERT,
                &[
                    &row.event_id,
                    &row.symbol,
                    &row.price,
                    &row.volume,
                    &row.ts,
                    &Jsonb(row.enrichment),
                ],
            )
        })
        .and_then(|p| p.execute("COMMIT", &[]));
    if let Err(e) = built {
        return Err(StoreError {
            reason: e.to_string(),
            maybe_committed: false,
        });
    }
    tx.sync();
    let mut pause = Duration::from_millis(5);
    let mut last = StoreError {
        reason: "no attempt was made before the deadline".into(),
        maybe_committed: false,
    };
    for attempt in 1..=attempts.max(1) {
        if Instant::now() >= deadline {
            break;
        }
        let mut lease = match pool.acquire().await {
            Ok(lease) => lease,
            Err(e) => {
                last.reason = format!("no database connection: {e}");
                if !e.is_timeout() && e.create_error().is_none_or(|c| !c.is_transient()) {
                    return Err(last);
                }
                continue;
            }
        };
        match lease.pipeline(&tx).await {
            Ok(results) => {
                let failed = results.iter().find_map(StepResult::error).cloned();
                let inserted = results.get(1).map(StepResult::count) == Some(1);
                // Back to the pool: recycling rolls back a failed transaction.
                lease.release().await;
                match failed {
                    None => return Ok(inserted),
                    Some(e) => {
                        last = StoreError {
                            reason: format!("the database refused the event: {e}"),
                            maybe_committed: false,
                        };
                        if !e.is_transient() {
                            return Err(last);
                        }
                    }
                }
            }
            Err(e) => {
                // The connection broke mid-transaction: COMMIT may or may not
                // have landed; a retry inserts nothing twice (ON CONFLICT).
                last = StoreError {
                    reason: format!("the database connection failed: {e}"),
                    maybe_committed: true,
                };
                lease.discard_broken().await;
                if !e.is_transient() {
                    return Err(last);
                }
            }
        }
        if attempt < attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            tally::sleep(pause.min(left)).await;
            pause = pause.saturating_mul(2);
        }
    }
    Err(last)
}
