//! Progress of a network session, for a display the caller owns.
//!
//! The library reports and never draws: when a sample starts, a session asks its [`Progress`]
//! for a [`SampleProgress`], handing it the plan's predicted [`Step`]s (key setup, every layer,
//! the output reveal, each with the round count at its end), then reports the rounds done after
//! every round and the end of the sample. `heq-run` draws indicatif bars from these reports
//! (its `cli::progress`); tests and embedders pass no observer.

use std::fmt;

use super::Prepared;
use crate::nonlinear::Role;
use crate::transport::{Counters, Exchange, TransportError};

/// One predicted step of a sample: what runs and the sample's round count at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// `setup`, `layer <id>` or `reveal`.
    pub label: String,
    /// Rounds of the sample once this step is done.
    pub end_round: u64,
}

/// The predicted steps of one sample of `prepared`'s plan, in order.
pub fn steps(prepared: &Prepared) -> Vec<Step> {
    let cost = &prepared.cost;
    let rows = std::iter::once((cost.setup.rounds, "setup".to_string()))
        .chain(
            cost.layers
                .iter()
                .map(|l| (l.traffic.rounds, format!("layer {}", l.layer))),
        )
        .chain(std::iter::once((cost.reveal.rounds, "reveal".to_string())));
    let mut end_round = 0;
    rows.map(|(rounds, label)| {
        end_round += rounds;
        Step { label, end_round }
    })
    .collect()
}

/// Where sessions report their progress (shared by concurrent sessions).
pub trait Progress: Send + Sync + fmt::Debug {
    /// Sample `sample` (0-based) of `samples` starts for `role`, with these predicted `steps`;
    /// returns the observer of its rounds.
    fn sample(
        &self,
        role: Role,
        sample: u64,
        samples: u64,
        steps: &[Step],
    ) -> Box<dyn SampleProgress>;
}

/// Observes the rounds of one sample.
pub trait SampleProgress: Send {
    /// `rounds` rounds of the sample are done.
    fn rounds_done(&mut self, rounds: u64);

    /// The sample ended (successfully or not).
    fn finish(&mut self);
}

/// An [`Exchange`] that reports the rounds done to an observer after every round.
pub(super) struct Observed<E> {
    inner: E,
    observer: Option<Box<dyn SampleProgress>>,
    frames_before: u64,
}

impl<E: Exchange> Observed<E> {
    /// Observes `inner` from its current counters on.
    pub(super) fn new(inner: E, mut observer: Option<Box<dyn SampleProgress>>) -> Self {
        if let Some(o) = &mut observer {
            o.rounds_done(0);
        }
        let frames_before = inner.counters().frames_sent;
        Observed {
            inner,
            observer,
            frames_before,
        }
    }

    /// Tells the observer that the sample ended; returns the channel.
    pub(super) fn finish(mut self) -> E {
        if let Some(o) = &mut self.observer {
            o.finish();
        }
        self.inner
    }
}

impl<E: Exchange> Exchange for Observed<E> {
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let incoming = self.inner.exchange(out)?;
        if let Some(o) = &mut self.observer {
            o.rounds_done(self.inner.counters().frames_sent - self.frames_before);
        }
        Ok(incoming)
    }

    fn counters(&self) -> Counters {
        self.inner.counters()
    }
}
