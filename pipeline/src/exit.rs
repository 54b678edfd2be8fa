//! The pipeline's exit status, from how the run ended.
//!
//! | code | when |
//! | --- | --- |
//! | 0 | every admitted event was processed, and no row was rejected |
//! | 3 | the run completed, but some events failed or rows were rejected (all in the dead-letter file) |
//! | 1 | the run could not start or finish (unreadable input, no database, input cut short) |
//! | 130 | Ctrl-C (the report is still printed) |

/// How a run ended, as far as the exit status cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunEnd {
    /// Events admitted.
    pub admitted: u64,
    /// Events processed.
    pub processed: u64,
    /// Events failed.
    pub failed: u64,
    /// Events interrupted.
    pub interrupted: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Whether the run started and went through all of its input (false when
    /// the input could not be read, the database could not be reached, or a
    /// stream broke part-way).
    pub finished: bool,
    /// Whether Ctrl-C stopped it.
    pub ctrl_c: bool,
}

/// The exit status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: every admitted event was processed.
    Success,
    /// 3: completed, with failed events or rejected rows.
    CompletedWithFailures,
    /// 1: could not start or finish.
    Error,
    /// 130: stopped by Ctrl-C.
    Interrupted,
}

impl ExitStatus {
    /// Decides the status of a run. In order: Ctrl-C gives 130; a run that
    /// did not finish gives 1, and so does one whose outcomes do not add up
    /// (admitted ≠ processed + failed + interrupted) or that interrupted
    /// events without a Ctrl-C; failures or rejections give 3; else 0.
    ///
    /// ```
    /// use tally_pipeline::exit::{ExitStatus, RunEnd};
    ///
    /// let run = RunEnd { admitted: 10, processed: 9, failed: 1, finished: true, ..RunEnd::default() };
    /// assert_eq!(ExitStatus::of(&run).code(), 3);
    /// ```
    pub fn of(run: &RunEnd) -> ExitStatus {
        let accounted = run
            .processed
            .checked_add(run.failed)
            .and_then(|n| n.checked_add(run.interrupted));
        if run.ctrl_c {
            ExitStatus::Interrupted
        } else if !run.finished || accounted != Some(run.admitted) || run.interrupted > 0 {
            ExitStatus::Error
        } else if run.failed > 0 || run.rejected > 0 {
            ExitStatus::CompletedWithFailures
        } else {
            ExitStatus::Success
        }
    }

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::CompletedWithFailures => 3,
            ExitStatus::Error => 1,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(admitted: u64, processed: u64, failed: u64, interrupted: u64, rejected: u64) -> RunEnd {
        RunEnd {
            admitted,
            processed,
            failed,
            interrupted,
            rejected,
            finished: true,
            ctrl_c: false,
        }
    }

    #[test]
    fn every_case_of_the_rule() {
        let code = |r: RunEnd| ExitStatus::of(&r).code();
        assert_eq!(code(run(5031, 5031, 0, 0, 0)), 0);
        assert_eq!(code(run(0, 0, 0, 0, 0)), 0);
        assert_eq!(code(run(5031, 5030, 1, 0, 0)), 3);
        assert_eq!(code(run(5029, 5029, 0, 0, 2)), 3);
        assert_eq!(code(run(0, 0, 0, 0, 7)), 3);
        assert_eq!(
            code(RunEnd {
                finished: false,
                ..run(0, 0, 0, 0, 0)
            }),
            1
        );
        assert_eq!(
            code(RunEnd {
                finished: false,
                ..run(100, 100, 0, 0, 0)
            }),
            1
        );
        // Outcomes that do not add up, or interruptions without Ctrl-C.
        assert_eq!(code(run(10, 9, 0, 0, 0)), 1);
        assert_eq!(code(run(10, 8, 0, 2, 0)), 1);
        assert_eq!(code(run(u64::MAX, u64::MAX, 1, 0, 0)), 1);
        // Ctrl-C wins over everything.
        let ctrl_c = RunEnd {
            ctrl_c: true,
            finished: false,
            ..run(10, 5, 1, 4, 3)
        };
        assert_eq!(ExitStatus::of(&ctrl_c), ExitStatus::Interrupted);
        assert_eq!(code(ctrl_c), 130);
        assert_eq!(
            code(RunEnd {
                ctrl_c: true,
                ..run(10, 10, 0, 0, 0)
            }),
            130
        );
    }
}
