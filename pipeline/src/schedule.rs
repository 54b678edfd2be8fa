//! When each event is due: at a fixed rate, along a spike's three phases,
//! or as fast as the pipeline takes them.

use std::time::{Duration, Instant};

use crate::run::Spike;

/// The schedule of admissions.
pub(crate) struct Schedule {
    pub(crate) start: Instant,
    pub(crate) rate: Option<f64>,
    pub(crate) spike: Option<Spike>,
    pub(crate) next: Duration,
}

impl Schedule {
    fn rate_at(&self, t: f64) -> Option<f64> {
        match self.spike {
            Some(s) if t < s.baseline_secs => Some(s.baseline_rate),
            Some(s) if t < s.baseline_secs + s.spike_secs => Some(s.spike_rate),
            Some(s) => Some(s.baseline_rate),
            None => self.rate,
        }
    }

    fn end(&self) -> Option<f64> {
        self.spike.map(|s| 2.0 * s.baseline_secs + s.spike_secs)
    }

    /// The next event's scheduled time, or `None` when a spike is over.
    pub(crate) fn next(&mut self) -> Option<Option<Instant>> {
        let t = self.next.as_secs_f64();
        if self.end().is_some_and(|end| t >= end) {
            return None;
        }
        match self.rate_at(t) {
            Some(rate) if rate > 0.0 => {
                let at = self.start + self.next;
                self.next += Duration::from_secs_f64(1.0 / rate);
                Some(Some(at))
            }
            _ => Some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_schedules_its_three_phases_at_their_rates_then_ends() {
        let start = Instant::now();
        let mut schedule = Schedule {
            start,
            rate: None,
            spike: Some(Spike {
                baseline_rate: 10.0,
                baseline_secs: 1.0,
                spike_rate: 100.0,
                spike_secs: 1.0,
            }),
            next: Duration::ZERO,
        };
        let mut times = Vec::new();
        while let Some(Some(at)) = schedule.next() {
            times.push(at - start);
        }
        // 10 in the first second, 100 in the spike, 10 after.
        assert_eq!(times.len(), 120);
        assert_eq!(times[10], Duration::from_secs(1));
        assert!(times[109] < Duration::from_secs(2));
        assert!(times[110] >= Duration::from_secs(2));
    }

    #[test]
    fn without_a_rate_every_event_is_due_at_once() {
        let mut schedule = Schedule {
            start: Instant::now(),
            rate: None,
            spike: None,
            next: Duration::ZERO,
        };
        for _ in 0..1000 {
            assert_eq!(schedule.next(), Some(None));
        }
    }
}
