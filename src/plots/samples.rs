//! A grid of sample images per class, titled with the class, like the tutorial's 5x5 grids of
//! cats and dogs: the first images of each class, as the network sees them (after resizing).

use super::thumbnails::{self, Panel};
use super::Picture;
use crate::data::Images;

const GRID: usize = 5;

/// Renders up to 5x5 images of each class, five classes to a row.
pub fn render(images: &Images) -> Result<Picture, String> {
    let panels: Vec<Panel> = images
        .classes
        .iter()
        .enumerate()
        .map(|(label, class)| {
            let thumbs = (0..images.len())
                .filter(|&i| images.labels_at(i).contains(&label))
                .take(GRID * GRID)
                .map(|i| {
                    let chw: Vec<f32> =
                        images.bytes(&[i]).map_err(|e| e.to_string())?.into_iter().map(f32::from).collect();
                    Ok(thumbnails::thumbnail(&chw, images.shape))
                })
                .collect::<Result<_, String>>()?;
            Ok(Panel::new(class.clone(), thumbs, GRID, GRID))
        })
        .collect::<Result<_, String>>()?;
    thumbnails::render(&panels, 5)
}
