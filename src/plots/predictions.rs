//! A grid of validation images with their true and predicted class and the confidence;
//! mistakes (shown first) are titled in red with a ✗.

use super::thumbnails::{self, Panel};
use super::Picture;
use crate::data::Images;
use crate::train::Prediction;

const SHOWN: usize = 24;
/// Thumbnail side: wide enough for a caption like "✗ ankle_boot → sneaker 81%".
const THUMB: u32 = 160;

/// Renders up to 24 of the images `indices` with `predictions` (same order): up to half
/// mistakes first, then correct ones, each group taking one image of each true class in turn so
/// every class shows up.
pub fn render(images: &Images, indices: &[usize], predictions: &[Prediction]) -> Result<Picture, String> {
    let pairs: Vec<(usize, Prediction)> = indices.iter().copied().zip(predictions.iter().copied()).collect();
    let spread = |wrong: bool| {
        let mut by_class: Vec<Vec<(usize, Prediction)>> = vec![Vec::new(); images.classes.len()];
        for &(i, p) in pairs.iter().filter(|(i, p)| (images.labels[*i] != p.class) == wrong) {
            by_class[images.labels[i]].push((i, p));
        }
        let longest = by_class.iter().map(Vec::len).max().unwrap_or(0);
        (0..longest)
            .flat_map(|k| by_class.iter().filter_map(move |c| c.get(k).copied()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let panels: Vec<Panel> = spread(true)
        .into_iter()
        .take(SHOWN / 2)
        .chain(spread(false))
        .take(SHOWN)
        .map(|(i, p)| {
            let truth = images.labels[i];
            let chw: Vec<f32> = images.bytes(&[i]).map_err(|e| e.to_string())?.into_iter().map(f32::from).collect();
            let mistake = truth != p.class;
            let title = format!(
                "{}{} → {} {:.0}%",
                if mistake { "✗ " } else { "" },
                images.classes[truth],
                images.classes[p.class],
                p.confidence * 100.0
            );
            Ok(Panel {
                title_size: 11,
                title_color: if mistake { [200, 30, 30] } else { [0, 0, 0] },
                thumb: THUMB,
                ..Panel::new(title, vec![thumbnails::thumbnail_sized(&chw, images.shape, THUMB)], 1, 1)
            })
        })
        .collect::<Result<_, String>>()?;
    thumbnails::render(&panels, 6)
}
