//! A bar chart of images per class, stacked by split, to see class balance at a glance.

use plotters::prelude::*;

use super::{chart_png, chart_svg, Picture};
use crate::data::{Images, Split};

/// Renders the class counts of `images` per split.
pub fn render(images: &Images, split: &Split) -> Result<Picture, String> {
    let n = images.classes.len();
    // counts[class][split]: train, validation, test.
    let mut counts = vec![[0usize; 3]; n];
    for (indices, s) in [(&split.train, 0), (&split.val, 1), (&split.test, 2)] {
        indices.iter().flat_map(|&i| images.labels_at(i)).for_each(|&l| counts[l][s] += 1);
    }
    Ok(Picture {
        png: chart_png(|r| draw(r, &images.classes, &counts).map_err(|e| e.to_string()))?,
        svg: chart_svg(|r| draw(r, &images.classes, &counts).map_err(|e| e.to_string()))?,
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    classes: &[String],
    counts: &[[usize; 3]],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = classes.len() as u32;
    let top = counts.iter().map(|c| c.iter().sum::<usize>()).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(root)
        .caption("Images per class and split", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0..top + top / 4 + 1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(classes.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => classes.get(*i as usize).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_desc("Images")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 13))
        .draw()?;
    let names = ["train", "validation", "test"];
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
    for s in 0..3 {
        if counts.iter().all(|c| c[s] == 0) {
            continue;
        }
        let color = colors[s];
        chart
            .draw_series(counts.iter().enumerate().map(|(i, c)| {
                let base: usize = c[..s].iter().sum();
                let x = i as u32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(x), base), (SegmentValue::Exact(x + 1), base + c[s])],
                    color.filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))?
            .label(names[s])
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()
}
