//! Figures of runs, drawn with plotters as SVG and PNG.
//!
//! Text uses DejaVu Sans, bundled in `assets/` (Bitstream Vera licence, see
//! `assets/DejaVuSans-LICENSE.txt`), through plotters' `ab_glyph` feature, so no system font
//! library is needed. Runs of one task family share each figure, and each method is one legend
//! entry. Seeds are averaged in curves, pooled in histograms and drawn as separate points in
//! the accuracy–compute figure.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use thiserror::Error;

use crate::runs::{Run, RunState};
use crate::table::main_split;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Size of single-panel figures in pixels; text sizes are chosen to stay readable when a README
/// shows the PNG at about 700 pixels wide.
const SIZE: (u32, u32) = (900, 560);

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn colour(index: usize) -> RGBColor {
    COLOURS[index % COLOURS.len()]
}

/// An error while drawing or writing a figure.
#[derive(Debug, Error)]
pub enum PlotError {
    #[error("failed to create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("the bundled font could not be loaded: {0}")]
    Font(String),
    #[error("no completed or training runs with data to plot among {runs} runs")]
    Nothing { runs: usize },
}

fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "DejaVuSans.ttf is not a valid font".to_owned())
        })
        .clone()
        .map_err(PlotError::Font)
}

/// A named series of (x, y) points.
type Series = (String, Vec<(f64, f64)>);

/// One figure, independent of the backend that draws it.
#[derive(Debug, Clone)]
enum Figure {
    /// Points per method plus the Pareto frontier of all points.
    AccuracyCompute {
        title: String,
        x_label: String,
        series: Vec<Series>,
        frontier: Vec<(f64, f64)>,
    },
    /// Share of samples (%) at each halting step, bars per method.
    Histogram {
        title: String,
        x_label: String,
        series: Vec<(String, Vec<f64>)>,
    },
    /// A line chart.
    Lines {
        title: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
    },
    /// Loss, accuracy and compute per epoch in three panels.
    Training {
        title: String,
        compute_label: String,
        loss: Vec<Series>,
        accuracy: Vec<Series>,
        compute: Vec<Series>,
    },
    /// Share of samples at each halting step (rows) for each epoch (columns).
    Heatmap {
        title: String,
        y_label: String,
        shares: Vec<Vec<f64>>,
    },
}

impl Figure {
    fn size(&self) -> (u32, u32) {
        match self {
            Figure::Training { .. } => (1500, 520),
            _ => SIZE,
        }
    }
}

/// Draws every figure the runs have data for into `out_dir`, as `NAME.svg` and `NAME.png`,
/// and returns the paths written. Failed runs are left out; runs still training contribute
/// their training curves.
pub fn plot_runs(runs: &[Run], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    std::fs::create_dir_all(out_dir).map_err(|source| PlotError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let figures = figures(runs);
    if figures.is_empty() {
        return Err(PlotError::Nothing { runs: runs.len() });
    }
    let mut written = Vec::new();
    for (name, figure) in &figures {
        let svg = out_dir.join(format!("{name}.svg"));
        let png = out_dir.join(format!("{name}.png"));
        let draw_error = |path: &Path| {
            let path = path.to_path_buf();
            move |message: String| PlotError::Draw { path, message }
        };
        {
            let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
            draw(figure, &root).map_err(draw_error(&svg))?;
            root.present()
                .map_err(|e| draw_error(&svg)(e.to_string()))?;
        }
        {
            let root = BitMapBackend::new(&png, figure.size()).into_drawing_area();
            draw(figure, &root).map_err(draw_error(&png))?;
            root.present()
                .map_err(|e| draw_error(&png)(e.to_string()))?;
        }
        written.push(svg);
        written.push(png);
    }
    Ok(written)
}

/// Groups runs by task family, then by legend label: the method, with the recipe added when
/// two recipes of the task use the same method.
fn series_groups(runs: &[Run]) -> BTreeMap<String, BTreeMap<String, Vec<&Run>>> {
    let mut by_task: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for run in runs
        .iter()
        .filter(|run| !matches!(run.state, RunState::Failed { .. }))
    {
        by_task.entry(run.task.clone()).or_default().push(run);
    }
    by_task
        .into_iter()
        .map(|(task, runs)| {
            let mut recipes_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for run in &runs {
                let recipes = recipes_of.entry(&run.method).or_default();
                if !recipes.contains(&run.recipe.as_str()) {
                    recipes.push(&run.recipe);
                }
            }
            let mut groups: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
            for run in &runs {
                let label = if recipes_of[run.method.as_str()].len() > 1 {
                    format!("{} ({})", run.method, run.recipe)
                } else {
                    run.method.clone()
                };
                groups.entry(label).or_default().push(run);
            }
            (task, groups)
        })
        .collect()
}

/// Points not dominated by another: no other point has at most the compute and more accuracy.
/// Minimises x and maximises y; returns the frontier sorted by x.
pub fn pareto_frontier(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    // By compute ascending, and at equal compute by accuracy descending.
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut frontier: Vec<(f64, f64)> = Vec::new();
    for point in sorted {
        if frontier.last().is_none_or(|last| point.1 > last.1) {
            frontier.push(point);
        }
    }
    frontier
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Averages per-run values by x (epoch, difficulty) across the runs of a series.
fn average_by_x(per_run: impl Iterator<Item = Vec<(f64, f64)>>) -> Vec<(f64, f64)> {
    let mut by_x: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for points in per_run {
        for (x, y) in points {
            if y.is_finite() {
                by_x.entry(x.to_bits()).or_insert((x, Vec::new())).1.push(y);
            }
        }
    }
    let mut points: Vec<(f64, f64)> = by_x
        .into_values()
        .filter_map(|(x, ys)| Some((x, mean(&ys)?)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Builds every figure the runs have data for, with its file name stem.
fn figures(runs: &[Run]) -> Vec<(String, Figure)> {
    let mut figures = Vec::new();
    for (task, groups) in series_groups(runs) {
        // Accuracy against compute.
        let uses_flops = groups.values().flatten().any(|run| {
            run.number(&format!("evaluation.{}.flop_fraction", main_split(run)))
                .is_some()
        });
        let mut series = Vec::new();
        let mut all_points = Vec::new();
        for (label, runs) in &groups {
            let mut points = Vec::new();
            for run in completed(runs) {
                let split = main_split(run);
                let accuracy = run.number(&format!("evaluation.{split}.accuracy"));
                let compute_key = if uses_flops {
                    "flop_fraction"
                } else {
                    "mean_halting_step"
                };
                let compute = run.number(&format!("evaluation.{split}.{compute_key}"));
                if let (Some(x), Some(y)) = (compute, accuracy) {
                    points.push((x, y * 100.0));
                }
                if let Some(evaluation) = run.result.as_ref().and_then(|r| r.evaluation.get(split))
                {
                    points.extend(
                        evaluation
                            .sweep
                            .iter()
                            .map(|point| (point.flop_fraction, point.accuracy * 100.0)),
                    );
                }
            }
            if !points.is_empty() {
                all_points.extend(points.iter().copied());
                series.push((label.clone(), points));
            }
        }
        if !series.is_empty() {
            figures.push((
                format!("{task}_accuracy_compute"),
                Figure::AccuracyCompute {
                    title: format!("{task}: accuracy against compute"),
                    x_label: if uses_flops {
                        "compute (fraction of full-network FLOPs)".to_owned()
                    } else {
                        "compute (mean halting steps)".to_owned()
                    },
                    frontier: pareto_frontier(&all_points),
                    series,
                },
            ));
        }

        // Halting depth histograms, pooled over seeds.
        let mut histograms = Vec::new();
        for (label, runs) in &groups {
            let mut counts: Vec<u64> = Vec::new();
            for run in completed(runs) {
                let split = main_split(run);
                if let Some(evaluation) = run.result.as_ref().and_then(|r| r.evaluation.get(split))
                {
                    let run_counts = &evaluation.halting_histogram.counts;
                    if counts.len() < run_counts.len() {
                        counts.resize(run_counts.len(), 0);
                    }
                    for (total, count) in counts.iter_mut().zip(run_counts) {
                        *total += count;
                    }
                }
            }
            let total: u64 = counts.iter().sum();
            if total > 0 {
                let shares = counts
                    .iter()
                    .map(|&count| count as f64 * 100.0 / total as f64)
                    .collect();
                histograms.push((label.clone(), shares));
            }
        }
        if !histograms.is_empty() {
            figures.push((
                format!("{task}_halting_histogram"),
                Figure::Histogram {
                    title: format!("{task}: where samples halt"),
                    x_label: if uses_flops {
                        "exit layer".to_owned()
                    } else {
                        "halting step".to_owned()
                    },
                    series: histograms,
                },
            ));
        }

        // Halting steps against difficulty, on the widest evaluation (`test`).
        let mut difficulty = Vec::new();
        for (label, runs) in &groups {
            let points = average_by_x(completed(runs).into_iter().map(|run| {
                run.result
                    .as_ref()
                    .and_then(|r| r.evaluation.get("test"))
                    .map(|evaluation| {
                        evaluation
                            .halting_step_by_difficulty
                            .iter()
                            .map(|(&k, &steps)| (k as f64, steps))
                            .collect()
                    })
                    .unwrap_or_default()
            }));
            if !points.is_empty() {
                difficulty.push((label.clone(), points));
            }
        }
        if !difficulty.is_empty() {
            figures.push((
                format!("{task}_halting_by_difficulty"),
                Figure::Lines {
                    title: format!("{task}: halting steps against difficulty"),
                    x_label: "difficulty (non-zero inputs)".to_owned(),
                    y_label: "mean halting steps".to_owned(),
                    series: difficulty,
                },
            ));
        }

        // Training curves, averaged over seeds, including runs still training.
        let has_expected = groups
            .values()
            .flatten()
            .any(|run| run.history.iter().any(|r| r.expected_compute.is_some()));
        let (mut loss, mut accuracy, mut compute) = (Vec::new(), Vec::new(), Vec::new());
        for (label, runs) in &groups {
            let curve = |f: &dyn Fn(&crate::results::EpochRecord) -> Option<f64>| {
                average_by_x(runs.iter().map(|run| {
                    run.history
                        .iter()
                        .filter_map(|record| Some((record.epoch as f64, f(record)?)))
                        .collect()
                }))
            };
            let loss_curve = curve(&|r| Some(r.loss));
            if loss_curve.is_empty() {
                continue;
            }
            loss.push((label.clone(), loss_curve));
            accuracy.push((label.clone(), curve(&|r| Some(r.accuracy * 100.0))));
            compute.push((
                label.clone(),
                curve(&|r| {
                    if has_expected {
                        r.expected_compute
                    } else {
                        Some(r.mean_halting_step)
                    }
                }),
            ));
        }
        if !loss.is_empty() {
            figures.push((
                format!("{task}_training"),
                Figure::Training {
                    title: format!("{task}: training"),
                    compute_label: if has_expected {
                        "expected compute (steps)".to_owned()
                    } else {
                        "mean halting step or exit layer".to_owned()
                    },
                    loss,
                    accuracy,
                    compute,
                },
            ));
        }

        // Halting distribution over training, one heatmap per method.
        for (label, runs) in &groups {
            let epochs = runs.iter().map(|run| run.history.len()).max().unwrap_or(0);
            let mut shares: Vec<Vec<f64>> = Vec::new();
            for epoch in 0..epochs {
                let per_run: Vec<Vec<f64>> = runs
                    .iter()
                    .filter_map(|run| run.history.get(epoch))
                    .filter(|record| record.halting_histogram.total() > 0)
                    .map(|record| record.halting_histogram.shares())
                    .collect();
                let steps = per_run.iter().map(Vec::len).max().unwrap_or(0);
                shares.push(
                    (0..steps)
                        .map(|step| {
                            let values: Vec<f64> = per_run
                                .iter()
                                .map(|s| s.get(step).copied().unwrap_or(0.0))
                                .collect();
                            mean(&values).unwrap_or(0.0) * 100.0
                        })
                        .collect(),
                );
            }
            if shares.iter().any(|column| !column.is_empty()) {
                figures.push((
                    format!("{task}_halting_heatmap_{}", sanitise(label)),
                    Figure::Heatmap {
                        title: format!("{task}, {label}: halting over training"),
                        y_label: if uses_flops {
                            "exit layer".to_owned()
                        } else {
                            "halting step".to_owned()
                        },
                        shares,
                    },
                ));
            }
        }
    }
    figures
}

/// The runs of a series that finished.
fn completed<'a>(runs: &[&'a Run]) -> Vec<&'a Run> {
    runs.iter()
        .copied()
        .filter(|run| run.state == RunState::Completed)
        .collect()
}

/// A value range around the data with 5 % padding, including zero when `from_zero` is set.
fn padded(values: impl Iterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (mut low, mut high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !low.is_finite() {
        return 0.0..1.0;
    }
    if from_zero {
        low = low.min(0.0);
    }
    if high - low < 1e-9 {
        low -= 0.5;
        high += 0.5;
    }
    let pad = (high - low) * 0.05;
    (if from_zero && low >= 0.0 {
        low
    } else {
        low - pad
    })..(high + pad)
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    root.fill(&WHITE).map_err(text)?;
    match figure {
        Figure::AccuracyCompute {
            title,
            x_label,
            series,
            frontier,
        } => {
            let points = series.iter().flat_map(|(_, p)| p.iter());
            let x = padded(points.clone().map(|p| p.0), false);
            let y = padded(points.map(|p| p.1), false);
            let mut chart = chart(root, title, x, y)?;
            mesh(&mut chart, x_label, "accuracy (%)")?;
            chart
                .draw_series(LineSeries::new(
                    frontier.iter().copied(),
                    BLACK.mix(0.6).stroke_width(2),
                ))
                .map_err(text)?
                .label("Pareto frontier")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2))
                });
            for (index, (label, points)) in series.iter().enumerate() {
                let colour = colour(index);
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 6, colour.filled())))
                    .map_err(text)?
                    .label(label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 12, y), 6, colour.filled()));
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        Figure::Histogram {
            title,
            x_label,
            series,
        } => {
            let steps = series.iter().map(|(_, s)| s.len()).max().unwrap_or(1);
            let high = series
                .iter()
                .flat_map(|(_, s)| s.iter().copied())
                .fold(0.0, f64::max);
            let mut chart = chart(root, title, 0.5..steps as f64 + 0.5, 0.0..high * 1.1 + 1e-9)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(steps.min(20))
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .x_desc(x_label.as_str())
                .y_desc("share of samples (%)")
                .label_style((FAMILY, 18))
                .axis_desc_style((FAMILY, 20))
                .draw()
                .map_err(text)?;
            let width = 0.8 / series.len() as f64;
            for (index, (label, shares)) in series.iter().enumerate() {
                let colour = colour(index);
                let offset = -0.4 + width * index as f64;
                chart
                    .draw_series(shares.iter().enumerate().map(|(step, &share)| {
                        let left = step as f64 + 1.0 + offset;
                        Rectangle::new([(left, 0.0), (left + width, share)], colour.filled())
                    }))
                    .map_err(text)?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled())
                    });
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Figure::Lines {
            title,
            x_label,
            y_label,
            series,
        } => line_panel(root, title, x_label, y_label, series, true)?,
        Figure::Training {
            title,
            compute_label,
            loss,
            accuracy,
            compute,
        } => {
            let (top, body) = root.split_vertically(40);
            top.titled(title, (FAMILY, 26)).map_err(text)?;
            let panels = body.split_evenly((1, 3));
            line_panel(&panels[0], "loss", "epoch", "training loss", loss, false)?;
            line_panel(
                &panels[1],
                "accuracy",
                "epoch",
                "training accuracy (%)",
                accuracy,
                false,
            )?;
            line_panel(&panels[2], "compute", "epoch", compute_label, compute, true)?;
        }
        Figure::Heatmap {
            title,
            y_label,
            shares,
        } => {
            let epochs = shares.len();
            let steps = shares.iter().map(Vec::len).max().unwrap_or(1).max(1);
            // The darkest colour is the largest share in the figure, so that spread-out
            // distributions stay visible.
            let largest = shares
                .iter()
                .flatten()
                .copied()
                .fold(0.0, f64::max)
                .max(1e-9);
            let mut chart = chart(
                root,
                &format!("{title} (share: white 0 %, dark {largest:.0} %)"),
                0.5..epochs as f64 + 0.5,
                0.5..steps as f64 + 0.5,
            )?;
            chart
                .configure_mesh()
                .disable_mesh()
                .y_labels(steps.min(20))
                .y_label_formatter(&|y| format!("{}", y.round() as i64))
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .x_desc("epoch")
                .y_desc(y_label.as_str())
                .label_style((FAMILY, 18))
                .axis_desc_style((FAMILY, 20))
                .draw()
                .map_err(text)?;
            chart
                .draw_series(shares.iter().enumerate().flat_map(|(epoch, column)| {
                    column.iter().enumerate().map(move |(step, &share)| {
                        let x = epoch as f64 + 1.0;
                        let y = step as f64 + 1.0;
                        Rectangle::new(
                            [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                            heat(share / largest).filled(),
                        )
                    })
                }))
                .map_err(text)?;
        }
    }
    Ok(())
}

/// White for 0, dark blue for 1.
fn heat(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn chart<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, DB>, String> {
    ChartBuilder::on(area)
        .caption(title, (FAMILY, 24))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(76)
        .build_cartesian_2d(x, y)
        .map_err(text)
}

fn mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    x_label: &str,
    y_label: &str,
) -> Result<(), String> {
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FAMILY, 18))
        .axis_desc_style((FAMILY, 20))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(text)
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 18))
        .draw()
        .map_err(text)
}

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    with_legend: bool,
) -> Result<(), String> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x = padded(points.clone().map(|p| p.0), false);
    let y = padded(points.map(|p| p.1), false);
    let mut chart = chart(area, title, x, y)?;
    mesh(&mut chart, x_label, y_label)?;
    for (index, (label, points)) in series.iter().enumerate() {
        let colour = colour(index);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(3),
            ))
            .map_err(text)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        if points.len() <= 30 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(text)?;
        }
    }
    if with_legend {
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_frontier_keeps_undominated_points() {
        let points = [
            (0.5, 90.0),
            (0.3, 85.0),
            (0.6, 88.0), // dominated by (0.5, 90)
            (1.0, 95.0),
            (0.3, 80.0), // same compute, less accurate
            (0.2, 70.0),
            (0.9, 95.0), // equal accuracy for less compute than (1.0, 95)
        ];
        assert_eq!(
            pareto_frontier(&points),
            vec![(0.2, 70.0), (0.3, 85.0), (0.5, 90.0), (0.9, 95.0)]
        );
    }

    #[test]
    fn averages_align_on_x() {
        let curve = average_by_x(vec![vec![(1.0, 2.0), (2.0, 4.0)], vec![(1.0, 4.0)]].into_iter());
        assert_eq!(curve, vec![(1.0, 3.0), (2.0, 4.0)]);
    }

    #[test]
    fn padding_handles_flat_and_empty_data() {
        assert_eq!(padded(std::iter::empty(), false), 0.0..1.0);
        let flat = padded([2.0, 2.0].into_iter(), false);
        assert!(flat.start < 2.0 && flat.end > 2.0);
        let from_zero = padded([3.0, 5.0].into_iter(), true);
        assert_eq!(from_zero.start, 0.0);
    }
}
