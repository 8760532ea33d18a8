//! The report as text: the fixed-width table ([`text`]), YAML and JSON ([`format`]), and the
//! one-line mixed-precision summary `heqc compile` prints too ([`precision_line`]).

use super::report::{Config, Predicted, Report, Time, shape_str};
use crate::error::{Error, Result};
use heq_runtime::plan::{Encoding, PrecisionBudget, PrecisionRecord};
use std::fmt::Write;

/// Output format of [`format`] and [`super::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Fixed-width table at most [`TEXT_WIDTH`] characters wide ([`text`]).
    Text,
    /// Fixed-width table with every column ([`text_wide`]).
    WideText,
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

/// Width of the default text table and of every other line of the text report.
pub const TEXT_WIDTH: usize = 120;

/// A column of the text table.
struct Column {
    header: &'static str,
    /// Width in the wide table (`--wide`): every column.
    wide: usize,
    /// Width in the default table, `None` for columns only the wide table shows (the
    /// protocol parameters: naive accumulator bound, requantization, tile, ring degree, share
    /// rings, primes, plaintext bits).
    narrow: Option<usize>,
    /// Right-aligned (numbers).
    right: bool,
    /// Text the default table may cut to its width (marked `~`); numbers are never cut.
    cut: bool,
}

const fn col(
    header: &'static str,
    wide: usize,
    narrow: Option<usize>,
    right: bool,
    cut: bool,
) -> Column {
    Column {
        header,
        wide,
        narrow,
        right,
        cut,
    }
}

/// The columns in order; the default table (at most [`TEXT_WIDTH`] characters) keeps those
/// with a narrow width.
const COLUMNS: [Column; 21] = [
    col("id", 4, Some(4), false, false),
    col("name", 24, Some(18), false, true),
    col("op", 8, Some(8), false, true),
    col("in", 12, Some(15), false, true),
    col("out", 12, Some(12), false, true),
    col("in_ty", 7, Some(5), false, true),
    col("w", 4, Some(4), false, false),
    col("acc", 4, Some(4), true, false),
    col("naive", 5, None, true, false),
    col("out", 4, Some(4), false, false),
    col("m_bit", 5, None, true, false),
    col("shift", 5, None, true, false),
    col("tile", 14, None, false, false),
    col("N", 5, None, true, false),
    col("ring", 6, None, false, false),
    col("q", 8, None, false, false),
    col("t", 3, None, true, false),
    col("up", 10, Some(10), true, false),
    col("down", 10, Some(10), true, false),
    col("rnd", 4, Some(4), true, false),
    col("ms", 9, Some(9), true, false),
];

/// `s` cut to `width` characters, the last one replaced by `~` when cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(width.saturating_sub(1)).collect();
        c.push('~');
        c
    }
}

/// One table line: the cells of the columns the table shows, padded to their widths.
fn table_line(cells: &[String], wide: bool) -> String {
    let mut fields = Vec::with_capacity(cells.len());
    for (c, cell) in COLUMNS.iter().zip(cells) {
        let Some(width) = (if wide { Some(c.wide) } else { c.narrow }) else {
            continue;
        };
        // The wide table cuts only names (at 24), as it always did.
        let cell = if c.cut && (!wide || c.header == "name") {
            cut(cell, width)
        } else {
            cell.clone()
        };
        fields.push(if c.right {
            format!("{cell:>width$}")
        } else {
            format!("{cell:<width$}")
        });
    }
    fields.join(" ")
}

/// The fixed-width text table, at most [`TEXT_WIDTH`] characters wide (some columns left
/// out, long names cut, long lines wrapped).
pub fn text(r: &Report) -> String {
    wrap(&text_table(r, false), TEXT_WIDTH)
}

/// The fixed-width text table with every column, however wide (`heqc explain --wide`).
pub fn text_wide(r: &Report) -> String {
    text_table(r, true)
}

fn text_table(r: &Report, wide: bool) -> String {
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
    let headers: Vec<String> = COLUMNS.iter().map(|c| c.header.to_string()).collect();
    let _ = writeln!(out, "{}", table_line(&headers, wide));
    for l in &r.layers {
        let ins = l
            .inputs
            .iter()
            .map(|s| shape_str(s))
            .collect::<Vec<_>>()
            .join(",");
        let ring = l
            .ring_bits
            .map_or_else(|| "-".to_string(), |(a, b)| format!("{a}/{b}"));
        let cells = [
            l.id.clone(),
            l.name.clone(),
            l.op.clone(),
            ins,
            shape_str(&l.output),
            l.input_bits.join(","),
            opt(&l.weight_bits),
            opt(&l.acc_bits),
            opt(&l.acc_bits_naive),
            l.output_bits.clone(),
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
        ];
        let _ = writeln!(out, "{}", table_line(&cells, wide));
        if let Some(c) = &l.carry {
            let _ = writeln!(
                out,
                "     carries: {c} (log-depth: fewer rounds, more bytes)"
            );
        }
        if l.faithful {
            let _ = writeln!(
                out,
                "     truncation: faithful (floor or ceiling: within 1 of the exact value)"
            );
        }
        if let Some(n) = l.chunks {
            let _ = writeln!(out, "     chunks: {n} (each repeats its protocol's rounds)");
        }
        if let Some(h) = &l.he {
            let _ = write!(out, "     HE {} up, {} down", h.bytes_up, h.bytes_down);
            if let Some(c) = l
                .config
                .as_ref()
                .filter(|c| c.encoding != Encoding::Cheetah)
            {
                let _ = write!(out, ", tile {}", c.tile);
            }
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
            "{} bytes ({} up, {} down) in {} rounds; keys {} bytes, reveal {} bytes; OT extension {} up, {} down, {} batch{} of up to {} ROTs; {} chunks of up to {} ROTs, pads up to {} / {} bytes (server / client)",
            p.channel.total_bytes(),
            p.channel.bytes_up,
            p.channel.bytes_down,
            p.channel.rounds,
            p.setup.total_bytes(),
            p.reveal.total_bytes(),
            p.ot_extension.bytes_up,
            p.ot_extension.bytes_down,
            p.ot_batches,
            if p.ot_batches == 1 { "" } else { "es" },
            p.ot_batch_rots,
            p.chunks,
            p.chunk_rots,
            p.server_pad_bytes,
            p.client_pad_bytes
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

/// Every line of `text` longer than `width` characters broken into lines of at most `width`
/// (where it has a break: after "; ", else after ", ", else at a space), the continuations
/// indented two more spaces than the line.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = line;
        let mut first = true;
        loop {
            let prefix = if first { 0 } else { indent + 2 };
            let room = width.saturating_sub(prefix);
            let at = (rest.chars().count() > room)
                .then(|| break_point(rest, room))
                .flatten();
            out.extend(std::iter::repeat_n(' ', prefix));
            match at {
                Some(at) => {
                    out.push_str(rest[..at].trim_end());
                    out.push('\n');
                    rest = rest[at..].trim_start();
                    first = false;
                }
                None => {
                    out.push_str(rest);
                    out.push('\n');
                    break;
                }
            }
        }
    }
    out
}

/// The byte index where `line` is best broken to keep at most `room` characters before it:
/// after the last "; " that fits, else after the last ", ", else at the last space; `None` if
/// there is no break (past the indentation).
fn break_point(line: &str, room: usize) -> Option<usize> {
    let end = line.char_indices().nth(room).map_or(line.len(), |(i, _)| i);
    let head = &line[..end];
    let start = line.len() - line.trim_start_matches(' ').len();
    ["; ", ", ", " "]
        .iter()
        .find_map(|sep| head.rfind(sep).filter(|&i| i > start).map(|i| i + 1))
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
    let faithful = p.faithful_seed.map_or(String::new(), |seed| {
        format!("; with faithful truncations (share splits simulated, seed {seed:#x})")
    });
    format!(
        "mixed precision ({budget}) on {} calibration samples: top-1 agreement {:.2}%, max output error {}; lowered: {lowered}{faithful}",
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
        Format::WideText => Ok(text_wide(r)),
        Format::Yaml => serde_norway::to_string(r).map_err(|e| Error::Format(e.to_string())),
        Format::Json => serde_json::to_string_pretty(r)
            .map(|s| s + "\n")
            .map_err(|e| Error::Format(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_at_the_best_break() {
        let line = "predicted: 10 bytes (4 up, 6 down); keys 3 bytes, reveal 1 bytes; OT 5 up";
        assert_eq!(
            wrap(line, 40),
            "predicted: 10 bytes (4 up, 6 down);\n  keys 3 bytes, reveal 1 bytes; OT 5 up\n"
        );
        assert_eq!(
            wrap("     HE 1 up, 2 down, runner-up x y z", 22),
            "     HE 1 up, 2 down,\n       runner-up x y z\n"
        );
        assert_eq!(
            wrap("short\nunbreakable_word_here", 10),
            "short\nunbreakable_word_here\n"
        );
    }

    #[test]
    fn cut_marks_what_it_drops_and_respects_characters() {
        assert_eq!(cut("block1.conv1", 20), "block1.conv1");
        assert_eq!(cut("a_very_long_layer_name", 8), "a_very_~");
        assert_eq!(cut("ééééé", 3), "éé~");
    }

    #[test]
    fn the_default_table_fits_and_the_wide_one_has_every_column() {
        let headers: Vec<String> = COLUMNS.iter().map(|c| c.header.to_string()).collect();
        let narrow = table_line(&headers, false);
        let wide = table_line(&headers, true);
        let width: usize = COLUMNS.iter().filter_map(|c| c.narrow.map(|w| w + 1)).sum();
        assert!(
            narrow.len() <= TEXT_WIDTH && width - 1 <= TEXT_WIDTH,
            "{narrow}"
        );
        assert_eq!(wide.split_whitespace().count(), COLUMNS.len());
        assert!(!narrow.contains("naive") && wide.contains("naive"));
    }
}
