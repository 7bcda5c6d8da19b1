//! The confusion matrix: rows are true classes, columns predicted ones, cells shaded by the
//! fraction of the row, with counts written in.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{chart_png, chart_svg, Picture};

/// Counts `[true][predicted]` of `predictions` against `truth`.
pub fn matrix(classes: usize, truth: &[usize], predicted: &[usize]) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    truth.iter().zip(predicted).for_each(|(&t, &p)| m[t][p] += 1);
    m
}

/// Renders `matrix` with class names on both axes.
pub fn render(classes: &[String], matrix: &[Vec<usize>], title: &str) -> Result<Picture, String> {
    Ok(Picture {
        png: chart_png(|r| draw(r, classes, matrix, title).map_err(|e| e.to_string()))?,
        svg: chart_svg(|r| draw(r, classes, matrix, title).map_err(|e| e.to_string()))?,
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    classes: &[String],
    matrix: &[Vec<usize>],
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = classes.len() as u32;
    let last = n.saturating_sub(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(110)
        .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())?;
    // Row 0 at the top, as a confusion matrix is read.
    let name = |v: &SegmentValue<u32>, flip: bool| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            let i = if flip { last.saturating_sub(*i) } else { *i };
            classes.get(i as usize).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(classes.len())
        .y_labels(classes.len())
        .x_label_formatter(&|v| name(v, false))
        .y_label_formatter(&|v| name(v, true))
        .x_desc("Predicted")
        .y_desc("True")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 12))
        .draw()?;
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    for (t, row) in matrix.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let y = last - t as u32;
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
            let color = RGBColor(shade, shade, 255);
            let x = p as u32;
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ],
                color.filled(),
            )))?;
            let text = if share > 0.5 { style.color(&WHITE) } else { style.clone() };
            chart.draw_series(std::iter::once(Text::new(
                count.to_string(),
                (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                text,
            )))?;
        }
    }
    root.present()
}
