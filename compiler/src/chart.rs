//! `heqc explain --svg`: the per-layer predicted bytes of a plan as a stacked bar chart (bytes
//! up, bytes down), each layer's bar beside the Cheetah baseline's, drawn with plotters' SVG
//! backend (text as SVG `<text>`, no font files).

use crate::error::{Error, Result};
use crate::explain::Report;
use heq_runtime::cost::plan::Traffic;
use plotters::prelude::*;

const UP: RGBColor = RGBColor(31, 119, 180);
const DOWN: RGBColor = RGBColor(255, 127, 14);
const BASE_UP: RGBColor = RGBColor(158, 202, 225);
const BASE_DOWN: RGBColor = RGBColor(253, 208, 162);

fn draw_error(e: impl std::fmt::Display) -> Error {
    Error::Format(format!("cannot draw the chart: {e}"))
}

/// The SVG chart of a report: per layer (x axis, layer ids) two bars, this plan's and the
/// baseline's, each stacked bytes up then bytes down.
///
/// # Errors
/// [`Error::Format`] if plotters fails to draw.
pub fn svg(r: &Report) -> Result<String> {
    let n = r.layers.len();
    let zero = Traffic {
        bytes_up: 0,
        bytes_down: 0,
        rounds: 0,
    };
    let bars: Vec<(Traffic, Traffic)> = r
        .layers
        .iter()
        .map(|l| (l.predicted.unwrap_or(zero), l.baseline.unwrap_or(zero)))
        .collect();
    let top = bars
        .iter()
        .map(|(a, b)| a.total_bytes().max(b.total_bytes()))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let width = (160 + 44 * n as u32).max(640);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let slots = 2 * n.max(1) as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: predicted bytes per layer ({} profile, left) vs Cheetah baseline (right)",
                    r.model, r.profile
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d((0..slots).into_segmented(), 0f64..top)
            .map_err(draw_error)?;
        let ids: Vec<&str> = r.layers.iter().map(|l| l.id.as_str()).collect();
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) if i % 2 == 0 => ids
                .get(*i as usize / 2)
                .map_or_else(String::new, ToString::to_string),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(slots as usize + 1)
            .x_label_formatter(&label)
            .y_desc("bytes")
            .x_desc("layer")
            .draw()
            .map_err(draw_error)?;
        let bar = |slot: i32, lo: u64, hi: u64, color: RGBColor| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(slot), lo as f64),
                    (SegmentValue::Exact(slot + 1), hi as f64),
                ],
                color.filled(),
            );
            r.set_margin(0, 0, 2, 2);
            r
        };
        let series: [(&str, RGBColor, bool, bool); 4] = [
            ("bytes up", UP, false, true),
            ("bytes down", DOWN, false, false),
            ("baseline up", BASE_UP, true, true),
            ("baseline down", BASE_DOWN, true, false),
        ];
        for (name, color, base, up) in series {
            let rects = bars.iter().enumerate().map(|(i, (plan, baseline))| {
                let t = if base { baseline } else { plan };
                let slot = 2 * i as i32 + i32::from(base);
                if up {
                    bar(slot, 0, t.bytes_up, color)
                } else {
                    bar(slot, t.bytes_up, t.total_bytes(), color)
                }
            });
            chart
                .draw_series(rects)
                .map_err(draw_error)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}
