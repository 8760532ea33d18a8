//! What a run cost, for people (a table on stderr) and for machines (`heq-run --report
//! r.json`; the schema is `docs/report.md`).
//!
//! Rows are summed over samples (and, for a server, over sessions); measured and predicted
//! numbers sit side by side. Up is client → server in every role.

use std::time::Duration;

use serde::Serialize;

use super::{Report, Row};
use crate::cost::plan::{PlanCost, Traffic, ot_extension_traffic};
use crate::nonlinear::Role;
use crate::plan::OtBackend;
use crate::transport::Counters;
use crate::transport::net::QuicCounts;

/// Schema identifier written into every report.
pub const SCHEMA: &str = "heq-run-report/1";

/// Largest relative difference between measured and predicted bytes a layer may show before
/// the run warns (0.1 %).
pub const TOLERANCE: f64 = 1e-3;

/// Bytes of a frame header (the `u32` length prefix).
pub const FRAME_HEADER_BYTES: u64 = 4;

/// Sums per-sample reports row by row (the rows of every sample are the same plan's).
pub fn aggregate<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Report {
    let mut rows: Vec<Row> = Vec::new();
    for report in reports {
        if rows.is_empty() {
            rows = report.rows.clone();
            continue;
        }
        for (sum, row) in rows.iter_mut().zip(&report.rows) {
            sum.measured = sum.measured + row.measured;
            sum.predicted = sum.predicted + row.predicted;
            sum.time += row.time;
        }
    }
    Report { rows }
}

/// Bytes one way and the other, and rounds, as written in the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficJson {
    /// Client → server bytes.
    pub bytes_up: u64,
    /// Server → client bytes.
    pub bytes_down: u64,
    /// Rounds (one message each way).
    pub rounds: u64,
}

impl From<Traffic> for TrafficJson {
    fn from(t: Traffic) -> Self {
        TrafficJson {
            bytes_up: t.bytes_up,
            bytes_down: t.bytes_down,
            rounds: t.rounds,
        }
    }
}

/// One row: setup, a layer or the reveal; or the total.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowJson {
    /// `"setup"`, `"reveal"`, `"total"` or the layer's op kind.
    pub name: String,
    /// The layer id (`"l3"`), for layer rows.
    pub layer: Option<String>,
    /// Application payload on the protocol channel, measured.
    pub measured: TrafficJson,
    /// The plan's prediction.
    pub predicted: TrafficJson,
    /// This party's wall time in milliseconds.
    pub wall_ms: f64,
}

impl From<&Row> for RowJson {
    fn from(r: &Row) -> Self {
        RowJson {
            name: r.name.clone(),
            layer: r.layer.map(|l| l.to_string()),
            measured: r.measured.into(),
            predicted: r.predicted.into(),
            wall_ms: ms(r.time),
        }
    }
}

/// Traffic of the OT extension, which runs beside the protocol channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OtJson {
    /// Client → server bytes: measured if `source` is `"measured"`, else the prediction.
    pub bytes_up: u64,
    /// Server → client bytes.
    pub bytes_down: u64,
    /// `"measured"`: the QUIC connection's stream bytes outside the protocol frames (the OT
    /// extension's streams, with their cryprot-net stream headers); `"predicted"` (`--mode
    /// sim`): the cost model, which the runtime's tests check against cryprot-net's counters.
    pub source: &'static str,
    /// The cost model's bytes client → server (base OTs once per session, then the plan's OT
    /// batches for every sample).
    pub predicted_bytes_up: u64,
    /// The cost model's bytes server → client.
    pub predicted_bytes_down: u64,
    /// ROTs with the server as OT sender.
    pub server_rots: u64,
    /// ROTs with the client as OT sender.
    pub client_rots: u64,
}

impl OtJson {
    /// The prediction for `sessions` sessions of `samples` samples in all: each session's
    /// first batch includes the base OTs, later batches reuse them.
    pub fn predicted(cost: &PlanCost, backend: OtBackend, sessions: u64, samples: u64) -> Self {
        let batch = |first| {
            let t = ot_extension_traffic(backend, &cost.ot_batches, first);
            (t.bytes_up, t.bytes_down)
        };
        let (first, later) = (batch(true), batch(false));
        let firsts = sessions.min(samples);
        let up = first.0 * firsts + later.0 * (samples - firsts);
        let down = first.1 * firsts + later.1 * (samples - firsts);
        OtJson {
            bytes_up: up,
            bytes_down: down,
            source: "predicted",
            predicted_bytes_up: up,
            predicted_bytes_down: down,
            server_rots: cost.server_rots * samples,
            client_rots: cost.client_rots * samples,
        }
    }

    /// Replaces the bytes by the measurement (client → server, server → client).
    pub fn with_measured(self, up: u64, down: u64) -> Self {
        OtJson {
            bytes_up: up,
            bytes_down: down,
            source: "measured",
            ..self
        }
    }

    /// A warning if the measured bytes differ from the prediction by more than [`TOLERANCE`].
    pub fn deviation(&self) -> Option<String> {
        let off = |m: u64, p: u64| (m as f64 - p as f64).abs() > TOLERANCE * (p as f64).max(1.0);
        (self.source == "measured"
            && (off(self.bytes_up, self.predicted_bytes_up)
                || off(self.bytes_down, self.predicted_bytes_down)))
        .then(|| {
            format!(
                "warning: OT extension: measured {} bytes up / {} down, predicted {} / {} (more than {}% apart)",
                self.bytes_up,
                self.bytes_down,
                self.predicted_bytes_up,
                self.predicted_bytes_down,
                TOLERANCE * 100.0
            )
        })
    }

    /// Field-wise sum (several sessions; measured only if both are).
    pub fn add(&mut self, other: &OtJson) {
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
        if other.source != self.source {
            self.source = "predicted";
            self.bytes_up = self.predicted_bytes_up + other.predicted_bytes_up;
            self.bytes_down = self.predicted_bytes_down + other.predicted_bytes_down;
        }
        self.predicted_bytes_up += other.predicted_bytes_up;
        self.predicted_bytes_down += other.predicted_bytes_down;
        self.server_rots += other.server_rots;
        self.client_rots += other.client_rots;
    }
}

/// Bytes cryprot-net writes when it opens the frame stream (a stream of the top-level
/// connection: `u32` length and a 3-byte bincode stream id).
const FRAME_STREAM_HEADER_BYTES: u64 = 7;

/// The OT extension's bytes (client → server, server → client) of a network session seen by
/// `role`: the QUIC stream bytes minus the frame stream (payload, frame headers, its stream
/// header).
pub fn measured_ot(role: Role, frames: Counters, quic: QuicCounts) -> (u64, u64) {
    let framed =
        |bytes: u64, frames: u64| bytes + FRAME_HEADER_BYTES * frames + FRAME_STREAM_HEADER_BYTES;
    let sent = quic
        .stream_bytes_sent
        .saturating_sub(framed(frames.bytes_sent, frames.frames_sent));
    let received = quic
        .stream_bytes_received
        .saturating_sub(framed(frames.bytes_received, frames.frames_received));
    match role {
        Role::Client => (sent, received),
        Role::Server => (received, sent),
    }
}

/// What the transport added to the application payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportJson {
    /// Frame headers client → server (4 bytes per frame, handshake and closing included).
    pub frame_header_bytes_up: u64,
    /// Frame headers server → client.
    pub frame_header_bytes_down: u64,
    /// Handshake and closing frames' payload, client → server.
    pub control_bytes_up: u64,
    /// Handshake and closing frames' payload, server → client.
    pub control_bytes_down: u64,
    /// UDP payload bytes client → server (QUIC packets: everything above, the OT extension,
    /// QUIC and TLS overhead, acknowledgements, retransmissions); `null` in `--mode sim`.
    pub quic_bytes_up: Option<u64>,
    /// UDP payload bytes server → client.
    pub quic_bytes_down: Option<u64>,
}

impl TransportJson {
    /// The overhead of network sessions as seen by `role`: frame headers and control frames
    /// from the channel's `frames` counters beyond the rows' `payload`, and the QUIC
    /// datagrams.
    pub fn measure(
        role: Role,
        frames: Counters,
        payload: Traffic,
        quic: Option<QuicCounts>,
    ) -> Self {
        let (sent_frames, received_frames) = (frames.frames_sent, frames.frames_received);
        let (sent_ctl, received_ctl) = (
            frames.bytes_sent.saturating_sub(sent_bytes(role, payload)),
            frames
                .bytes_received
                .saturating_sub(received_bytes(role, payload)),
        );
        let orient = |s: u64, r: u64| match role {
            Role::Client => (s, r),
            Role::Server => (r, s),
        };
        let (hdr_up, hdr_down) = orient(
            FRAME_HEADER_BYTES * sent_frames,
            FRAME_HEADER_BYTES * received_frames,
        );
        let (ctl_up, ctl_down) = orient(sent_ctl, received_ctl);
        let quic = quic.map(|q| orient(q.datagram_bytes_sent, q.datagram_bytes_received));
        TransportJson {
            frame_header_bytes_up: hdr_up,
            frame_header_bytes_down: hdr_down,
            control_bytes_up: ctl_up,
            control_bytes_down: ctl_down,
            quic_bytes_up: quic.map(|q| q.0),
            quic_bytes_down: quic.map(|q| q.1),
        }
    }

    /// Field-wise sum (several sessions).
    pub fn add(&mut self, other: &TransportJson) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.frame_header_bytes_up += other.frame_header_bytes_up;
        self.frame_header_bytes_down += other.frame_header_bytes_down;
        self.control_bytes_up += other.control_bytes_up;
        self.control_bytes_down += other.control_bytes_down;
        self.quic_bytes_up = sum(self.quic_bytes_up, other.quic_bytes_up);
        self.quic_bytes_down = sum(self.quic_bytes_down, other.quic_bytes_down);
    }
}

fn sent_bytes(role: Role, t: Traffic) -> u64 {
    match role {
        Role::Client => t.bytes_up,
        Role::Server => t.bytes_down,
    }
}

fn received_bytes(role: Role, t: Traffic) -> u64 {
    match role {
        Role::Client => t.bytes_down,
        Role::Server => t.bytes_up,
    }
}

/// The whole report file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// `"server"`, `"client"` or `"sim"` (both parties in one process; rows in the client's
    /// view).
    pub role: &'static str,
    /// Hex BLAKE3 hash of the public plan.
    pub plan_hash: String,
    /// `"silent"` or `"iknp"`.
    pub ot_backend: String,
    /// Sessions summed (1 for a client or `--mode sim`).
    pub sessions: u64,
    /// Samples summed over the sessions.
    pub samples: u64,
    /// Wall time of the sessions (summed for a server), milliseconds.
    pub wall_ms: f64,
    /// Peak resident set of this process (`VmHWM`), if the OS tells.
    pub peak_rss_bytes: Option<u64>,
    /// Setup, one row per layer, reveal; summed over samples.
    pub layers: Vec<RowJson>,
    /// The sum of `layers`.
    pub total: RowJson,
    /// The OT extension (all samples).
    pub ot_extension: OtJson,
    /// Transport overhead beyond the rows' payload.
    pub transport: TransportJson,
    /// Whether every row's measured traffic is within [`TOLERANCE`] of the prediction.
    pub matches_prediction: bool,
}

/// The metadata of a [`RunReport`] that does not come from the rows.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// `"server"`, `"client"` or `"sim"`.
    pub role: &'static str,
    /// Hash of the public plan.
    pub plan_hash: [u8; 32],
    /// The OT backend.
    pub ot_backend: OtBackend,
    /// The OT extension's traffic.
    pub ot: OtJson,
    /// Sessions summed.
    pub sessions: u64,
    /// Samples summed.
    pub samples: u64,
    /// Wall time.
    pub wall: Duration,
    /// Transport overhead.
    pub transport: TransportJson,
}

impl RunReport {
    /// Builds the report from the rows summed over all samples.
    pub fn new(info: RunInfo, summed: &Report) -> Self {
        let layers: Vec<RowJson> = summed.rows.iter().map(RowJson::from).collect();
        let predicted = summed
            .rows
            .iter()
            .fold(Traffic::default(), |t, r| t + r.predicted);
        let total = RowJson {
            name: "total".into(),
            layer: None,
            measured: summed.measured().into(),
            predicted: predicted.into(),
            wall_ms: ms(summed.time()),
        };
        RunReport {
            schema: SCHEMA,
            role: info.role,
            plan_hash: super::net::hex(&info.plan_hash),
            ot_backend: format!("{:?}", info.ot_backend).to_lowercase(),
            sessions: info.sessions,
            samples: info.samples,
            wall_ms: ms(info.wall),
            peak_rss_bytes: peak_rss_bytes(),
            layers,
            total,
            ot_extension: info.ot,
            transport: info.transport,
            matches_prediction: deviations(summed).is_empty(),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes (plain data)")
    }

    /// The summary lines printed under the per-layer table.
    pub fn summary(&self) -> String {
        let t = &self.transport;
        let ot = &self.ot_extension;
        let mut s = format!(
            "{} sample(s), {} session(s), {:.2} s; OT extension ({}): {} bytes up, {} bytes down ({}; predicted {} / {})\n\
             transport overhead: frame headers {} up / {} down, handshake+closing {} up / {} down",
            self.samples,
            self.sessions,
            self.wall_ms / 1e3,
            self.ot_backend,
            ot.bytes_up,
            ot.bytes_down,
            ot.source,
            ot.predicted_bytes_up,
            ot.predicted_bytes_down,
            t.frame_header_bytes_up,
            t.frame_header_bytes_down,
            t.control_bytes_up,
            t.control_bytes_down,
        );
        if let (Some(up), Some(down)) = (t.quic_bytes_up, t.quic_bytes_down) {
            s += &format!("; QUIC datagrams (everything): {up} up / {down} down");
        }
        if let Some(rss) = self.peak_rss_bytes {
            s += &format!("\npeak RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
        }
        s + "\n"
    }
}

/// One warning line per row whose measured bytes differ from the prediction by more than
/// [`TOLERANCE`] in either direction.
pub fn deviations(report: &Report) -> Vec<String> {
    let off = |m: u64, p: u64| (m as f64 - p as f64).abs() > TOLERANCE * (p as f64).max(1.0);
    report
        .rows
        .iter()
        .filter(|r| {
            off(r.measured.bytes_up, r.predicted.bytes_up)
                || off(r.measured.bytes_down, r.predicted.bytes_down)
        })
        .map(|r| {
            let layer = r.layer.map_or("-".to_string(), |l| l.to_string());
            format!(
                "warning: {layer} {}: measured {} bytes up / {} down, predicted {} / {} (more than {}% apart)",
                r.name,
                r.measured.bytes_up,
                r.measured.bytes_down,
                r.predicted.bytes_up,
                r.predicted.bytes_down,
                TOLERANCE * 100.0
            )
        })
        .collect()
}

/// `VmHWM` of this process from `/proc/self/status`, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(up: u64, pred: u64) -> Row {
        Row {
            name: "Conv".into(),
            layer: None,
            measured: Traffic {
                bytes_up: up,
                bytes_down: 0,
                rounds: 1,
            },
            predicted: Traffic {
                bytes_up: pred,
                bytes_down: 0,
                rounds: 1,
            },
            time: Duration::from_millis(2),
        }
    }

    #[test]
    fn aggregate_sums_rows_and_flags_deviations() {
        let a = Report {
            rows: vec![row(1000, 1000), row(10, 10)],
        };
        let b = Report {
            rows: vec![row(1000, 1000), row(12, 10)],
        };
        let sum = aggregate([&a, &b]);
        assert_eq!(sum.rows[0].measured.bytes_up, 2000);
        assert_eq!(sum.rows[0].measured.rounds, 2);
        assert_eq!(sum.rows[1].predicted.bytes_up, 20);
        assert_eq!(sum.rows[0].time, Duration::from_millis(4));
        assert!(deviations(&aggregate([&a])).is_empty());
        let d = deviations(&sum);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].contains("measured 22 bytes up / 0 down, predicted 20 / 0"),
            "{d:?}"
        );
    }

    #[test]
    fn transport_overhead_orientation() {
        let frames = Counters {
            bytes_sent: 152,
            bytes_received: 60,
            frames_sent: 5,
            frames_received: 5,
        };
        let payload = Traffic {
            bytes_up: 8,
            bytes_down: 100,
            rounds: 3,
        };
        let t = TransportJson::measure(Role::Server, frames, payload, None);
        assert_eq!((t.control_bytes_up, t.control_bytes_down), (52, 52));
        assert_eq!(
            (t.frame_header_bytes_up, t.frame_header_bytes_down),
            (20, 20)
        );
        assert_eq!(t.quic_bytes_up, None);
    }
}
