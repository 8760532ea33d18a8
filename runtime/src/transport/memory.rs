//! In-process channel: two [`Exchange`] endpoints over `std::sync::mpsc`, for running both
//! parties on two threads.

use std::sync::mpsc::{Receiver, Sender, channel};

use super::{Counters, Exchange, TransportError};

/// One endpoint of an in-process pipe.
pub struct PipeEnd {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    counters: Counters,
}

/// Two connected endpoints.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    let (tx_a, rx_b) = channel();
    let (tx_b, rx_a) = channel();
    (
        PipeEnd {
            tx: tx_a,
            rx: rx_a,
            counters: Counters::default(),
        },
        PipeEnd {
            tx: tx_b,
            rx: rx_b,
            counters: Counters::default(),
        },
    )
}

impl Exchange for PipeEnd {
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let sent = out.len();
        self.tx.send(out).map_err(|_| TransportError::Closed)?;
        let incoming = self.rx.recv().map_err(|_| TransportError::Closed)?;
        self.counters.record(sent, incoming.len());
        Ok(incoming)
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_exchanges_and_counts() {
        let (mut a, mut b) = pipe();
        let t = std::thread::spawn(move || {
            let got = b.exchange(vec![9; 5]).expect("exchange");
            (got, b.counters())
        });
        assert_eq!(a.exchange(vec![1, 2]).expect("exchange"), vec![9; 5]);
        let (got, cb) = t.join().expect("thread");
        assert_eq!(got, vec![1, 2]);
        assert_eq!(
            cb,
            Counters {
                bytes_sent: 5,
                bytes_received: 2,
                frames_sent: 1,
                frames_received: 1
            }
        );
    }

    #[test]
    fn closed_pipe_errors() {
        let (mut a, b) = pipe();
        drop(b);
        assert!(matches!(a.exchange(vec![]), Err(TransportError::Closed)));
    }
}
