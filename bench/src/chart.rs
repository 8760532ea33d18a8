//! The SVG chart of `docs/benchmarks.svg`: per model, heqc's plan next to the Cheetah
//! baseline, in three panels (communication, LAN latency, WAN latency), log scale.

use crate::cost::Predicted;
use crate::results::Comparison;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colour of heqc's bars.
const HEQC: RGBColor = RGBColor(31, 119, 180);
/// Colour of the baseline's bars.
const CHEETAH: RGBColor = RGBColor(255, 127, 14);

/// One panel: a title, the y-axis description, and the value of a plan.
struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&Predicted) -> f64,
}

const PANELS: [Panel; 3] = [
    Panel {
        title: "Communication per inference (channel + OT extension)",
        unit: "MB",
        value: |p| p.total_bytes() as f64 / 1e6,
    },
    Panel {
        title: "LAN latency (3 Gbps, 0.3 ms RTT; compute + communication)",
        unit: "s",
        value: |p| p.lan_latency_s,
    },
    Panel {
        title: "WAN latency (400 Mbps, 40 ms RTT; compute + communication)",
        unit: "s",
        value: |p| p.wan_latency_s,
    },
];

/// Draws the chart of `models` as an SVG document.
///
/// # Errors
/// The plotting library's error, as text.
pub fn render_svg(models: &[Comparison]) -> Result<String, String> {
    let mut svg = String::new();
    let width = (160 + 70 * models.len() as u32).max(800);
    {
        let root = SVGBackend::with_string(&mut svg, (width, 1200)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (area, panel) in root.split_evenly((PANELS.len(), 1)).iter().zip(&PANELS) {
            draw_panel(area, panel, models).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One panel's bars, labels and legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    models: &[Comparison],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let values: Vec<(f64, f64)> = models
        .iter()
        .map(|c| ((panel.value)(&c.heqc), (panel.value)(&c.cheetah)))
        .collect();
    let positive = values
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .filter(|v| *v > 0.0);
    let lo = positive.clone().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = positive.fold(0.0, f64::max).max(lo * 4.0) * 8.0;
    let n = models.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(10)
        .margin_left(20)
        .x_label_area_size(95)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(panel.unit)
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    let bars = |offset: f64, color: RGBColor, pick: fn(&(f64, f64)) -> f64| {
        values.iter().enumerate().map(move |(i, v)| {
            let x = i as f64 + offset;
            Rectangle::new([(x, lo), (x + 0.38, pick(v).max(lo))], color.filled())
        })
    };
    chart
        .draw_series(bars(0.12, HEQC, |v| v.0))?
        .label("heqc")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], HEQC.filled()));
    chart
        .draw_series(bars(0.5, CHEETAH, |v| v.1))?
        .label("Cheetah baseline")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], CHEETAH.filled()));
    // The ratio above each pair, the model name under it.
    let above = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let below = ("sans-serif", 12)
        .into_font()
        .transform(FontTransform::Rotate90)
        .color(&BLACK);
    for (i, (c, &(h, b))) in models.iter().zip(&values).enumerate() {
        let x = i as f64 + 0.5;
        let ratio = if h > 0.0 { b / h } else { 0.0 };
        chart.draw_series(std::iter::once(Text::new(
            format!("{ratio:.1}×"),
            (x, h.max(b) * 1.15),
            above.clone(),
        )))?;
        let (px, py) = chart.backend_coord(&(x, lo));
        area.draw(&Text::new(
            format!("{} {}", c.arch, c.precision),
            (
                px - area.get_base_pixel().0 + 6,
                py - area.get_base_pixel().1 + 6,
            ),
            below.clone(),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
