//! `heqc explain`: a plan → a per-layer report (text table, YAML or JSON). Works on client
//! plans (no weights: weight counts and runner-ups are then absent).
//!
//! Two steps: the report data (`report.rs`: the [`Report`], rows and totals from the plan and
//! its predictions) and its rendering (`render.rs`: [`text`], [`format`]). A freshly compiled plan is reported from its
//! [`Selection`] ([`report_selection`]: nothing priced or searched again); a plan read from disk
//! is priced, and its runner-ups searched, anew ([`report_with`]). Both give the same report.

mod render;
mod report;

pub use render::{Format, TEXT_WIDTH, format, precision_line, text, text_wide};
pub use report::{
    Config, LayerRow, Predicted, Report, RunnerUp, Time, Timing, Totals, report, report_selection,
    report_with,
};

use crate::error::Result;
use crate::select::Selection;
use heq_runtime::plan::Plan;

/// Renders the report of a plan read from disk in a format.
///
/// # Errors
/// [`crate::Error::Format`] if YAML/JSON serialisation fails.
pub fn render(plan: &Plan, format: Format) -> Result<String> {
    render_with(plan, format, &Timing::default())
}

/// Renders the report of a plan read from disk in a format, with times on `timing`.
///
/// # Errors
/// [`crate::Error::Format`] if YAML/JSON serialisation fails.
pub fn render_with(plan: &Plan, format: Format, timing: &Timing) -> Result<String> {
    self::format(&report_with(plan, timing), format)
}

/// Renders the report of a freshly compiled plan from its selection, with times on LAN and the
/// shipped compute profile.
///
/// # Errors
/// [`crate::Error::Format`] if YAML/JSON serialisation fails.
pub fn render_selection(selection: &Selection, format: Format) -> Result<String> {
    self::format(&report_selection(selection, &Timing::default()), format)
}
