//! The learning-rate finder's curve: loss against learning rate on a logarithmic axis, as
//! fastai's `plot_lr_find` draws it, the smoothed loss over each step's own, and a marker at
//! the suggested rate.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{chart_png, chart_svg, Picture};
use crate::train::lr_find::Point;

/// The curve of `points` (finite values only), titled for `experiment`, with a marker at
/// `suggestion` (learning rate, smoothed loss) when there is one.
pub fn render(points: &[Point], suggestion: Option<(f64, f64)>, experiment: &str) -> Result<Picture, String> {
    let title = format!("Learning rate finder: {experiment}");
    Ok(Picture {
        png: chart_png(|root| draw(root, points, suggestion, &title).map_err(|e| e.to_string()))?,
        svg: chart_svg(|root| draw(root, points, suggestion, &title).map_err(|e| e.to_string()))?,
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[Point],
    suggestion: Option<(f64, f64)>,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let finite: Vec<&Point> = points.iter().filter(|p| p.loss.is_finite() && p.smoothed_loss.is_finite()).collect();
    let first = finite.first().map_or(1e-7, |p| p.learning_rate);
    let last = finite.last().map_or(10.0, |p| p.learning_rate).max(first * 10.0);
    // The y range follows the smoothed loss without its last 5 points (as fastai's plot leaves
    // them out): where it shot up, they would squash the rest of the curve. What lies above is
    // drawn at the top edge.
    let shown = &finite[..finite.len().saturating_sub(5).max(finite.len().min(1))];
    let smoothed = shown.iter().map(|p| p.smoothed_loss);
    let (lo, hi) = smoothed.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let lo = shown.iter().map(|p| p.loss).fold(lo, f64::min).max(lo - (hi - lo));
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (bottom, top) = (lo - pad, hi + pad);
    let mut ctx = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((first..last).log_scale(), bottom..top)?;
    ctx.configure_mesh()
        .x_desc("Learning rate (log scale)")
        .y_desc("Loss")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()?;
    let grey = RGBColor(127, 127, 127);
    let raw = finite.iter().map(|p| (p.learning_rate, p.loss.clamp(bottom, top)));
    ctx.draw_series(LineSeries::new(raw, grey.mix(0.5).stroke_width(1)))?
        .label("Loss of each step")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.mix(0.5).stroke_width(1)));
    let blue = RGBColor(31, 119, 180);
    let curve = finite.iter().map(|p| (p.learning_rate, p.smoothed_loss.clamp(bottom, top)));
    ctx.draw_series(LineSeries::new(curve, blue.stroke_width(2)))?
        .label("Smoothed loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(2)));
    if let Some((rate, loss)) = suggestion {
        let red = RGBColor(214, 39, 40);
        ctx.draw_series(std::iter::once(Circle::new((rate, loss), 6, red.filled())))?
            .label(format!("Suggested: {rate:.2e} (valley)"))
            .legend(move |(x, y)| Circle::new((x + 12, y), 5, red.filled()));
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()
}
