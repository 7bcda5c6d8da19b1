//! Accuracy and loss curves over epochs, training and validation, as in the Keras tutorial.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{chart_png, chart_svg, Picture};
use crate::train::History;

/// One chart: a title, a y-axis label and named series over epochs 1..=n.
pub struct Chart {
    /// File stem (`accuracy`, `loss`).
    pub stem: &'static str,
    /// Caption.
    pub title: &'static str,
    /// Y-axis label.
    pub y_label: &'static str,
    /// Where the legend goes (away from where the curves usually run).
    pub legend: SeriesLabelPosition,
    /// (legend name, value per epoch).
    pub series: Vec<(&'static str, Vec<f64>)>,
}

/// The two charts of the Keras tutorial: accuracy and loss, training and validation.
pub fn charts(history: &History) -> Vec<Chart> {
    let col = |f: fn(&crate::train::EpochRecord) -> f64| history.epochs.iter().map(f).collect::<Vec<_>>();
    vec![
        Chart {
            stem: "accuracy",
            title: "Training and validation accuracy",
            y_label: "Accuracy",
            legend: SeriesLabelPosition::LowerRight,
            series: vec![("Training accuracy", col(|r| r.accuracy)), ("Validation accuracy", col(|r| r.val_accuracy))],
        },
        Chart {
            stem: "loss",
            title: "Training and validation loss",
            y_label: "Loss",
            legend: SeriesLabelPosition::UpperRight,
            series: vec![("Training loss", col(|r| r.loss)), ("Validation loss", col(|r| r.val_loss))],
        },
    ]
}

/// Renders `chart` as PNG and SVG.
pub fn render(chart: &Chart) -> Result<Picture, String> {
    Ok(Picture {
        png: chart_png(|root| draw(root, chart).map_err(|e| e.to_string()))
            .map_err(|e| format!("drawing {}.png: {e}", chart.stem))?,
        svg: chart_svg(|root| draw(root, chart).map_err(|e| e.to_string()))
            .map_err(|e| format!("drawing {}.svg: {e}", chart.stem))?,
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = chart.series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(1);
    let values = chart.series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut ctx = ChartBuilder::on(root)
        .caption(chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(1..n.max(2), (lo - pad)..(hi + pad))?;
    ctx.configure_mesh()
        .x_desc("Epoch")
        .y_desc(chart.y_label)
        .x_labels(n.clamp(2, 12))
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];
    for ((name, values), color) in chart.series.iter().zip(colors) {
        let points: Vec<(usize, f64)> = values.iter().enumerate().map(|(i, &v)| (i + 1, v)).collect();
        ctx.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        ctx.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    ctx.configure_series_labels()
        .position(chart.legend.clone())
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()
}
