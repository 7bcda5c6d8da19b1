//! A sweep's metric against one swept key: one point per trial (its best epoch), the best
//! trial ringed. Numbers go on a numeric axis (logarithmic when they are positive and span a
//! factor of three or more, as learning rates and layer widths do); anything else, such as optimizer names, on a category axis.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{chart_png, chart_svg, Picture};

/// Renders `points` (the key's value as written in TOML, the trial's best metric).
pub fn render(key: &str, metric: &str, maximize: bool, points: &[(String, f64)]) -> Result<Picture, String> {
    let draw_png = |root: &DrawingArea<BitMapBackend, Shift>| draw(root, key, metric, maximize, points);
    let draw_svg = |root: &DrawingArea<SVGBackend, Shift>| draw(root, key, metric, maximize, points);
    Ok(Picture { png: chart_png(draw_png)?, svg: chart_svg(draw_svg)? })
}

/// Where each value goes on the x axis, and how to label a position.
enum Axis {
    /// Plain numbers.
    Linear,
    /// log10 of positive numbers.
    Log,
    /// Positions 0, 1, ... of the distinct values in order of appearance.
    Categories(Vec<String>),
}

impl Axis {
    fn of(values: &[&str]) -> Axis {
        let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
        match numbers {
            Some(n) if !n.is_empty() && n.iter().all(|v| v.is_finite()) => {
                let (lo, hi) = n.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                if lo > 0.0 && hi / lo >= 3.0 {
                    Axis::Log
                } else {
                    Axis::Linear
                }
            }
            _ => {
                let mut seen: Vec<String> = Vec::new();
                for v in values {
                    if !seen.iter().any(|s| s == v) {
                        seen.push(v.to_string());
                    }
                }
                Axis::Categories(seen)
            }
        }
    }

    fn position(&self, value: &str) -> f64 {
        match self {
            Axis::Linear => value.parse().unwrap_or(0.0),
            Axis::Log => value.parse::<f64>().map_or(0.0, f64::log10),
            Axis::Categories(names) => names.iter().position(|n| n == value).unwrap_or(0) as f64,
        }
    }

    fn label(&self, x: f64) -> String {
        match self {
            Axis::Linear => significant(x),
            Axis::Log => significant(10f64.powf(x)),
            Axis::Categories(names) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }
}

/// `x` with at most 3 significant digits, in Rust's shortest form (0.000316, 32, 1e-7).
fn significant(x: f64) -> String {
    let rounded: f64 = format!("{x:.2e}").parse().unwrap_or(x);
    format!("{rounded}")
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    key: &str,
    metric: &str,
    maximize: bool,
    points: &[(String, f64)],
) -> Result<(), String> {
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(fail)?;
    let values: Vec<&str> = points.iter().map(|(v, _)| v.trim_matches('"')).collect();
    let axis = Axis::of(&values);
    let xs: Vec<f64> = values.iter().map(|v| axis.position(v)).collect();
    let ys = points.iter().map(|p| p.1).filter(|v| v.is_finite());
    let span = |it: &mut dyn Iterator<Item = f64>| {
        it.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)))
    };
    let (x_lo, x_hi) = match &axis {
        Axis::Categories(names) => (-0.5, names.len() as f64 - 0.5),
        _ => {
            let (lo, hi) = span(&mut xs.iter().copied());
            // A margin of 8% of the span; one value alone gets 10% of itself (or 1) each side.
            let pad = if hi > lo { (hi - lo) * 0.08 } else { (lo.abs() * 0.1).max(if lo == 0.0 { 1.0 } else { 0.0 }) };
            if lo.is_finite() {
                (lo - pad, hi + pad)
            } else {
                (0.0, 1.0)
            }
        }
    };
    let (y_lo, y_hi) = span(&mut ys.clone());
    let (y_lo, y_hi) = if y_lo.is_finite() { (y_lo, y_hi) } else { (0.0, 1.0) };
    let pad = ((y_hi - y_lo) * 0.1).max(1e-3);
    let better = if maximize { "higher is better" } else { "lower is better" };
    let mut ctx = ChartBuilder::on(root)
        .caption(format!("Best {metric} against {key}"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_lo..x_hi, (y_lo - pad)..(y_hi + pad))
        .map_err(fail)?;
    // Few distinct values (a grid): a tick at each one, labelled as written. Many (a random
    // search): evenly spaced ticks.
    let mut distinct: Vec<(f64, &str)> = Vec::new();
    for (&x, v) in xs.iter().zip(&values) {
        if !distinct.iter().any(|(d, _)| *d == x) {
            distinct.push((x, v));
        }
    }
    let own_ticks = distinct.len() <= 12;
    ctx.configure_mesh()
        .x_desc(key)
        .y_desc(format!("best {metric} ({better})"))
        .x_labels(if own_ticks { 0 } else { 8 })
        .x_label_formatter(&|x| axis.label(*x))
        .disable_x_mesh()
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    if own_ticks {
        let grid = BLACK.mix(0.15);
        let label = TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for &(x, text) in &distinct {
            ctx.draw_series(std::iter::once(PathElement::new(vec![(x, y_lo - pad), (x, y_hi + pad)], grid)))
                .map_err(fail)?;
            let (px, py) = ctx.backend_coord(&(x, y_lo - pad));
            root.draw(&Text::new(text.to_string(), (px, py + 6), label.clone())).map_err(fail)?;
        }
    }
    let color = RGBColor(31, 119, 180);
    let dots: Vec<(f64, f64)> =
        xs.iter().zip(points).filter(|(_, p)| p.1.is_finite()).map(|(&x, p)| (x, p.1)).collect();
    ctx.draw_series(dots.iter().map(|&p| Circle::new(p, 5, color.filled()))).map_err(fail)?;
    let best = dots.iter().copied().reduce(|a, b| if (b.1 > a.1) == maximize && b.1 != a.1 { b } else { a });
    if let Some(best) = best {
        ctx.draw_series(std::iter::once(Circle::new(best, 10, RGBColor(214, 39, 40).stroke_width(2)))).map_err(fail)?;
    }
    root.present().map_err(fail)
}
