//! The report as text: the fixed-width table ([`text`]), YAML and JSON ([`format`]), and the
//! one-line mixed-precision summary `heqc compile` prints too ([`precision_line`]).

use super::report::{Config, Predicted, Report, Time, shape_str};
use crate::error::{Error, Result};
use heq_runtime::plan::{PrecisionBudget, PrecisionRecord};
use std::fmt::Write;

/// Output format of [`format`] and [`super::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Fixed-width table.
    Text,
    /// YAML (serde_norway).
    Yaml,
    /// JSON (pretty).
    Json,
}

/// `v` as text, `-` when absent.
fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

/// The fixed-width text table.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} (profile {}, {} plan)",
        r.model,
        r.profile,
        if r.server_plan { "server" } else { "client" }
    );
    let _ = writeln!(out, "input  {}", r.input);
    let _ = writeln!(out, "output {}", r.output);
    if !r.epilogue.is_empty() {
        let _ = writeln!(
            out,
            "epilogue (on the client, in plaintext, after the reveal):"
        );
        for e in &r.epilogue {
            let _ = writeln!(
                out,
                "  {:<10} {:<24} {:<44} -> [{}] {}",
                e.op,
                e.name,
                e.detail,
                shape_str(&e.output),
                e.element
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<4} {:<24} {:<8} {:<12} {:<12} {:<7} {:<4} {:>4} {:>5} {:<4} {:>5} {:>5} {:<14} {:>5} {:<6} {:<8} {:>3} {:>10} {:>10} {:>4} {:>9}",
        "id",
        "name",
        "op",
        "in",
        "out",
        "in_ty",
        "w",
        "acc",
        "naive",
        "out",
        "m_bit",
        "shift",
        "tile",
        "N",
        "ring",
        "q",
        "t",
        "up",
        "down",
        "rnd",
        "ms"
    );
    for l in &r.layers {
        let name = if l.name.len() > 24 {
            format!("{}~", &l.name[..23])
        } else {
            l.name.clone()
        };
        let ins = l
            .inputs
            .iter()
            .map(|s| shape_str(s))
            .collect::<Vec<_>>()
            .join(",");
        let ring = l
            .ring_bits
            .map_or_else(|| "-".to_string(), |(a, b)| format!("{a}/{b}"));
        let _ = writeln!(
            out,
            "{:<4} {:<24} {:<8} {:<12} {:<12} {:<7} {:<4} {:>4} {:>5} {:<4} {:>5} {:>5} {:<14} {:>5} {:<6} {:<8} {:>3} {:>10} {:>10} {:>4} {:>9}",
            l.id,
            name,
            l.op,
            ins,
            shape_str(&l.output),
            l.input_bits.join(","),
            opt(&l.weight_bits),
            opt(&l.acc_bits),
            opt(&l.acc_bits_naive),
            l.output_bits,
            opt(&l.multiplier_bits),
            opt(&l.shift),
            opt(&l.tile),
            opt(&l.degree),
            ring,
            l.config
                .as_ref()
                .map_or_else(|| "-".to_string(), Config::moduli),
            opt(&l.config.as_ref().map(|c| c.plain_bits)),
            opt(&l.predicted.map(|t| t.bytes_up)),
            opt(&l.predicted.map(|t| t.bytes_down)),
            opt(&l.predicted.map(|t| t.rounds)),
            opt(&l.time.map(|t| format!("{:.3}", t.total_ms))),
        );
        if let Some(h) = &l.he {
            let _ = write!(out, "     HE {} up, {} down", h.bytes_up, h.bytes_down);
            if let Some(r) = &l.runner_up {
                let _ = write!(
                    out,
                    "; runner-up {}: {} up, {} down",
                    r.config, r.bytes_up, r.bytes_down
                );
            }
            let _ = writeln!(out);
        }
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "total: {} layers, {} linear, {} weights, {} MACs, {} accumulator bits saved over the naive bound",
        t.layers,
        t.linear_layers,
        opt(&t.weights),
        t.macs,
        t.acc_bits_saved
    );
    let traffic = |p: &Predicted| {
        format!(
            "{} bytes ({} up, {} down) in {} rounds; keys {} bytes, reveal {} bytes; OT extension {} up, {} down",
            p.channel.total_bytes(),
            p.channel.bytes_up,
            p.channel.bytes_down,
            p.channel.rounds,
            p.setup.total_bytes(),
            p.reveal.total_bytes(),
            p.ot_extension.bytes_up,
            p.ot_extension.bytes_down
        )
    };
    if let Some(p) = &t.predicted {
        let _ = writeln!(out, "predicted: {}", traffic(p));
    }
    if let Some(b) = &t.baseline {
        let _ = writeln!(out, "cheetah baseline: {}", traffic(b));
    }
    if let Some(ratio) = t.ratio {
        let _ = writeln!(out, "ratio: {ratio:.2}x less than the baseline");
    }
    let time = |t: &Time| {
        format!(
            "{:.3} ms (compute {:.3} ms, network {:.3} ms)",
            t.total_ms, t.compute_ms, t.network_ms
        )
    };
    if let Some(x) = &t.time {
        let _ = writeln!(
            out,
            "predicted time on {}, compute profile {}: {}",
            r.network,
            r.compute_profile,
            time(x)
        );
    }
    if let Some(b) = &t.baseline_time {
        let _ = writeln!(out, "cheetah baseline time: {}", time(b));
    }
    if let Some(p) = &r.precision {
        let _ = writeln!(out, "{}", precision_line(p));
    }
    out
}

/// One line on a mixed-precision plan: the budget, the layers lowered and the measured
/// agreement with the model as quantized.
pub fn precision_line(p: &PrecisionRecord) -> String {
    let budget = match p.budget {
        PrecisionBudget::AccuracyDrop(x) => format!("top-1 drop <= {x}"),
        PrecisionBudget::OutputError(e) => format!("max output error <= {e}"),
    };
    let lowered = if p.lowered.is_empty() {
        "none".to_string()
    } else {
        p.lowered
            .iter()
            .map(|l| {
                format!(
                    "{} w{}->{} a{}->{}",
                    l.name, l.weight_bits.0, l.weight_bits.1, l.output_bits.0, l.output_bits.1
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "mixed precision ({budget}) on {} calibration samples: top-1 agreement {:.2}%, max output error {}; lowered: {lowered}",
        p.samples,
        p.top1_agreement * 100.0,
        p.max_output_error
    )
}

/// Formats a report.
///
/// # Errors
/// [`Error::Format`] if YAML/JSON serialisation fails.
pub fn format(r: &Report, format: Format) -> Result<String> {
    match format {
        Format::Text => Ok(text(r)),
        Format::Yaml => serde_norway::to_string(r).map_err(|e| Error::Format(e.to_string())),
        Format::Json => serde_json::to_string_pretty(r)
            .map(|s| s + "\n")
            .map_err(|e| Error::Format(e.to_string())),
    }
}
