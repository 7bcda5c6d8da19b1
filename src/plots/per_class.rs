//! The per-class pictures of a split (`train::per_class`): ROC curves and precision-recall
//! curves, one per class against the rest (only the positive class's with two classes), and
//! the reliability diagram with its expected calibration error.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::curves::PALETTE;
use super::{chart_png, chart_svg, Picture};
use crate::train::per_class::{Confidence, Report};

/// A chart over the unit square.
type Unit<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The classes whose curves are drawn: the positive one of two, else every class.
fn drawn(report: &Report) -> std::ops::Range<usize> {
    match report.positive_class {
        Some(_) => 1..2,
        None => 0..report.classes.len(),
    }
}

/// `points` without those less than about a pixel from the last one kept (the first and the
/// last always stay): a curve has a point per distinct score, thousands for a large split,
/// which would make the SVG large without changing the picture.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    const PIXEL: f64 = 1.0 / 1000.0;
    let last = points.len().saturating_sub(1);
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len().min(4000));
    for (i, p) in points.into_iter().enumerate() {
        let far = |q: &(f64, f64)| (p.0 - q.0).abs() >= PIXEL || (p.1 - q.1).abs() >= PIXEL;
        if i == last || out.last().is_none_or(far) {
            out.push(p);
        }
    }
    out
}

/// The axes of a chart over the unit square (a little headroom above 1, so a curve along the
/// top stays visible).
fn unit_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
) -> Result<Unit<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0, 0.0..1.03)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(11)
        .y_labels(11)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .draw()?;
    Ok(chart)
}

/// The grey dashed diagonal from (0, 0) to (1, 1), labelled `name`.
fn diagonal<DB: DrawingBackend>(
    chart: &mut Unit<'_, DB>,
    name: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let grey = RGBColor(127, 127, 127);
    chart
        .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, grey.stroke_width(1)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(1)));
    Ok(())
}

/// The legend box, at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Unit<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// Draws `curve` (points of class `class`) with its legend entry `name`.
fn curve<DB: DrawingBackend>(
    chart: &mut Unit<'_, DB>,
    class: usize,
    points: Vec<(f64, f64)>,
    name: String,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let color = PALETTE[class % PALETTE.len()];
    chart
        .draw_series(LineSeries::new(thin(points), color.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
    Ok(())
}

/// The ROC curve of each class against the rest, its area in the legend.
pub fn roc(report: &Report, title: &str) -> Result<Picture, String> {
    Ok(Picture {
        png: chart_png(|root| draw_roc(root, report, title).map_err(|e| e.to_string()))?,
        svg: chart_svg(|root| draw_roc(root, report, title).map_err(|e| e.to_string()))?,
    })
}

fn draw_roc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = unit_chart(root, title, ("False positive rate", "True positive rate"))?;
    diagonal(&mut chart, "Chance (AUC 0.5)")?;
    for c in drawn(report) {
        let (Some(points), Some(auc)) = (&report.curves[c].roc, report.classes[c].roc_auc) else { continue };
        let points = points.iter().map(|p| (p.fpr, p.tpr)).collect();
        curve(&mut chart, c, points, format!("{} (AUC {auc:.3})", report.classes[c].class))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()
}

/// The precision-recall curve of each class against the rest, drawn as the steps that
/// average precision sums, with it in the legend.
pub fn precision_recall(report: &Report, title: &str) -> Result<Picture, String> {
    Ok(Picture {
        png: chart_png(|root| draw_precision_recall(root, report, title).map_err(|e| e.to_string()))?,
        svg: chart_svg(|root| draw_precision_recall(root, report, title).map_err(|e| e.to_string()))?,
    })
}

fn draw_precision_recall<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = unit_chart(root, title, ("Recall", "Precision"))?;
    for c in drawn(report) {
        let (Some(points), Some(ap)) = (&report.curves[c].precision_recall, report.classes[c].average_precision) else {
            continue;
        };
        // Each threshold's precision holds from the previous recall to its own.
        let mut steps = Vec::with_capacity(points.len() * 2);
        for w in points.windows(2) {
            steps.push((w[0].recall, w[1].precision));
            steps.push((w[1].recall, w[1].precision));
        }
        curve(&mut chart, c, steps, format!("{} (AP {ap:.3})", report.classes[c].class))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present()
}

/// The reliability diagram: per bin the fraction that was right (bars, with their counts)
/// and the mean confidence against it (points), the diagonal of perfect calibration, and the
/// expected calibration error in the title.
pub fn calibration(report: &Report, title: &str) -> Result<Picture, String> {
    Ok(Picture {
        png: chart_png(|root| draw_calibration(root, report, title).map_err(|e| e.to_string()))?,
        svg: chart_svg(|root| draw_calibration(root, report, title).map_err(|e| e.to_string()))?,
    })
}

fn draw_calibration<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let calibration = &report.calibration;
    let ece = calibration.ece.map_or("no samples".to_string(), |e| format!("ECE {e:.4}"));
    let positive = report.positive_class.as_deref().unwrap_or_default();
    let axes = match calibration.confidence {
        Confidence::PositiveClass => {
            (format!("Predicted probability of {positive}"), format!("Fraction that are {positive}"))
        }
        Confidence::TopLabel => ("Confidence (highest probability)".to_string(), "Fraction correct".to_string()),
        Confidence::EveryLabel => ("Predicted probability of a label".to_string(), "Fraction that have it".to_string()),
    };
    let mut chart = unit_chart(root, &format!("{title}, {ece}"), (&axes.0, &axes.1))?;
    let bar = RGBColor(31, 119, 180);
    let filled: Vec<_> = calibration.bins.iter().filter(|b| b.count > 0).collect();
    chart
        .draw_series(
            filled.iter().filter_map(|b| {
                Some(Rectangle::new([(b.lower, 0.0), (b.upper, b.frequency?)], bar.mix(0.35).filled()))
            }),
        )?
        .label("Observed frequency per bin (number: images in it)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 24, y + 5)], bar.mix(0.35).filled()));
    chart.draw_series(
        filled
            .iter()
            .filter_map(|b| Some(Rectangle::new([(b.lower, 0.0), (b.upper, b.frequency?)], bar.stroke_width(1)))),
    )?;
    let count_style = TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(filled.iter().filter_map(|b| {
        let at = ((b.lower + b.upper) / 2.0, b.frequency? + 0.01);
        Some(Text::new(b.count.to_string(), at, count_style.clone()))
    }))?;
    diagonal(&mut chart, "Perfectly calibrated")?;
    let orange = PALETTE[1];
    let points: Vec<(f64, f64)> = filled.iter().filter_map(|b| Some((b.mean_confidence?, b.frequency?))).collect();
    chart
        .draw_series(LineSeries::new(points.clone(), orange.stroke_width(2)))?
        .label("Mean confidence against frequency")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], orange.stroke_width(2)));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, orange.filled())))?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_drops_points_closer_than_a_pixel() {
        let points: Vec<(f64, f64)> = (0..=10_000).map(|i| (i as f64 / 10_000.0, 0.5)).collect();
        let thinned = thin(points);
        assert_eq!(thinned.first(), Some(&(0.0, 0.5)));
        assert_eq!(thinned.last(), Some(&(1.0, 0.5)));
        assert!((900..=1001).contains(&thinned.len()), "{}", thinned.len());
        assert_eq!(thin(vec![(0.0, 0.0), (0.0, 1.0)]).len(), 2);
        assert!(thin(Vec::new()).is_empty());
    }
}
