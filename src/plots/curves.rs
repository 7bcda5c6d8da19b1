//! Accuracy and loss curves over epochs, training and validation, as in the Keras tutorial.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{chart_png, chart_svg, Picture};
use crate::train::History;

/// One chart: a title, a y-axis label and series over epochs 1..=n.
pub struct Chart {
    /// File stem (`accuracy`, `loss`).
    pub stem: &'static str,
    /// Caption.
    pub title: String,
    /// Y-axis label.
    pub y_label: &'static str,
    /// Where the legend goes (away from where the curves usually run).
    pub legend: SeriesLabelPosition,
    /// The curves.
    pub series: Vec<Series>,
}

/// One curve.
pub struct Series {
    /// Legend entry; empty for none.
    pub name: String,
    /// Value per epoch.
    pub values: Vec<f64>,
    /// Index into the palette.
    pub color: usize,
    /// Dashed (training curves in comparisons) rather than solid.
    pub dashed: bool,
}

/// Matplotlib's tab10 palette, so charts look like the ones Keras users know.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The two charts of the Keras tutorial: accuracy and loss, training and validation; and the
/// learning rate when a schedule changed it.
pub fn charts(history: &History) -> Vec<Chart> {
    let col = |f: fn(&crate::train::EpochRecord) -> f64| history.epochs.iter().map(f).collect::<Vec<_>>();
    let series = |name: &str, values, color| Series { name: name.into(), values, color, dashed: false };
    let mut charts = vec![
        Chart {
            stem: "accuracy",
            title: "Training and validation accuracy".into(),
            y_label: "Accuracy",
            legend: SeriesLabelPosition::LowerRight,
            series: vec![
                series("Training accuracy", col(|r| r.accuracy), 0),
                series("Validation accuracy", col(|r| r.val_accuracy), 1),
            ],
        },
        Chart {
            stem: "loss",
            title: "Training and validation loss".into(),
            y_label: "Loss",
            legend: SeriesLabelPosition::UpperRight,
            series: vec![
                series("Training loss", col(|r| r.loss), 0),
                series("Validation loss", col(|r| r.val_loss), 1),
            ],
        },
    ];
    let rates = col(|r| r.learning_rate);
    if rates.windows(2).any(|w| w[0] != w[1]) {
        charts.push(Chart {
            stem: "learning_rate",
            title: "Learning rate (at the end of each epoch)".into(),
            y_label: "Learning rate",
            legend: SeriesLabelPosition::UpperRight,
            series: vec![series("", rates, 2)],
        });
    }
    charts
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
    let n = chart.series.iter().map(|s| s.values.len()).max().unwrap_or(0).max(1);
    let values = chart.series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 24))
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
    for s in &chart.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let points: Vec<(usize, f64)> = s.values.iter().enumerate().map(|(i, &v)| (i + 1, v)).collect();
        let drawn = if s.dashed {
            ctx.draw_series(DashedLineSeries::new(points.clone(), 6, 4, color.stroke_width(2)))?
        } else {
            ctx.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
        };
        if !s.name.is_empty() {
            drawn
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        }
        if !s.dashed {
            ctx.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
    }
    ctx.configure_series_labels()
        .position(chart.legend.clone())
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()
}
