//! Why an acquire failed.

use std::fmt;
use std::time::Duration;

/// The stage of an acquire that ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in line for an object.
    Wait,
    /// Making a new object.
    Create,
    /// Checking an idle object before handing it out.
    Recycle,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Wait => "wait",
            Stage::Create => "create",
            Stage::Recycle => "recycle",
        })
    }
}

/// Why an acquire gave no lease.
#[derive(Debug)]
pub struct PoolError<E> {
    kind: Kind<E>,
}

#[derive(Debug)]
enum Kind<E> {
    Timeout {
        stage: Stage,
        waited: Duration,
        waiters: usize,
    },
    Closed,
    Exhausted,
    Create(E),
}

impl<E> PoolError<E> {
    pub(crate) fn timeout(stage: Stage, waited: Duration, waiters: usize) -> Self {
        PoolError {
            kind: Kind::Timeout {
                stage,
                waited,
                waiters,
            },
        }
    }

    pub(crate) fn closed() -> Self {
        PoolError { kind: Kind::Closed }
    }

    pub(crate) fn exhausted() -> Self {
        PoolError {
            kind: Kind::Exhausted,
        }
    }

    pub(crate) fn create(e: E) -> Self {
        PoolError {
            kind: Kind::Create(e),
        }
    }

    /// The stage that timed out, if one did.
    pub fn timeout_stage(&self) -> Option<Stage> {
        match self.kind {
            Kind::Timeout { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// How long the acquire waited before it timed out.
    pub fn waited(&self) -> Option<Duration> {
        match self.kind {
            Kind::Timeout { waited, .. } => Some(waited),
            _ => None,
        }
    }

    /// How many acquires were waiting in line when this one timed out, itself
    /// included (for a wait timeout).
    pub fn waiters(&self) -> Option<usize> {
        match self.kind {
            Kind::Timeout { waiters, .. } => Some(waiters),
            _ => None,
        }
    }

    /// Whether the acquire timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// Whether the pool is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }

    /// Whether `try_acquire` found nothing idle and no room to make an object.
    pub fn is_exhausted(&self) -> bool {
        matches!(self.kind, Kind::Exhausted)
    }

    /// The error that made creating an object fail.
    pub fn create_error(&self) -> Option<&E> {
        match &self.kind {
            Kind::Create(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Timeout {
                stage,
                waited,
                waiters,
            } => write!(
                f,
                "acquire timed out at the {stage} stage after {waited:?}, with {waiters} waiting"
            ),
            Kind::Closed => f.write_str("the pool is closed"),
            Kind::Exhausted => f.write_str("no idle object and no room to make one"),
            Kind::Create(e) => write!(f, "making a new object failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PoolError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Create(e) => Some(e),
            _ => None,
        }
    }
}
