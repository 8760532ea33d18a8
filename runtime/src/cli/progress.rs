//! The progress display of the network roles: one indicatif bar per running sample on stderr
//! (hidden when stderr is not a terminal), over the sample's predicted rounds and labelled
//! with the running step. Implements the library's [`Progress`] observer.

use heq_runtime::nonlinear::Role;
use heq_runtime::party::progress::{Progress, SampleProgress, Step};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars on stderr, one per running sample of any session.
#[derive(Debug)]
pub struct Bars(MultiProgress);

impl Bars {
    /// An empty display on stderr.
    pub fn stderr() -> Self {
        Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    }
}

impl Progress for Bars {
    fn sample(
        &self,
        role: Role,
        sample: u64,
        samples: u64,
        steps: &[Step],
    ) -> Box<dyn SampleProgress> {
        let total = steps.last().map_or(0, |s| s.end_round);
        let bar = self.0.add(ProgressBar::new(total));
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} rounds, {msg} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let who = match role {
            Role::Server => "server",
            Role::Client => "client",
        };
        bar.set_prefix(format!("{who} sample {}/{samples}", sample + 1));
        Box::new(Bar {
            bar,
            steps: steps.to_vec(),
        })
    }
}

/// The bar of one sample.
struct Bar {
    bar: ProgressBar,
    steps: Vec<Step>,
}

impl SampleProgress for Bar {
    fn rounds_done(&mut self, rounds: u64) {
        self.bar.set_position(rounds);
        if let Some(step) = self.steps.iter().find(|s| s.end_round > rounds) {
            self.bar.set_message(step.label.clone());
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
