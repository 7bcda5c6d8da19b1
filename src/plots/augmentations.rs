//! The augmentation preview: for a few training images, the original next to the variants
//! training will actually see in its first epochs (the same draws, from the same seed).

use super::thumbnails::{self, Panel};
use super::Picture;
use crate::data::augment::{self, AugmentConfig};
use crate::data::{Images, Split};

/// Training images shown.
const SAMPLES: usize = 6;
/// Augmented variants per image (epochs 1 to 7).
const VARIANTS: usize = 7;

/// Renders the preview of `cfg` on the first training image of each of the first classes.
pub fn render(cfg: &AugmentConfig, images: &Images, split: &Split, seed: u64) -> Result<Picture, String> {
    let mut picks: Vec<usize> = Vec::new();
    for label in (0..images.classes.len()).cycle().take(SAMPLES * images.classes.len()) {
        if picks.len() == SAMPLES.min(split.train.len()) {
            break;
        }
        if let Some(&i) = split.train.iter().find(|&&i| images.labels[i] == label && !picks.contains(&i)) {
            picks.push(i);
        }
    }
    let panels: Vec<Panel> = picks
        .iter()
        .map(|&i| {
            let pixels = images.bytes(&[i]).map_err(|e| e.to_string())?;
            let original: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
            let mut cells = vec![thumbnails::thumbnail(&original, images.shape)];
            for epoch in 0..VARIANTS {
                let x = augment::batch(cfg, &pixels, images.shape, &[i], seed, epoch);
                cells.push(thumbnails::thumbnail(&x.iter().map(|v| v * 255.0).collect::<Vec<_>>(), images.shape));
            }
            let file = images.paths[i].file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let title = format!("{} {file}: original, then epochs 1-{VARIANTS}", images.classes[images.labels[i]]);
            Ok(Panel::new(title, cells, VARIANTS + 1, 1))
        })
        .collect::<Result<_, String>>()?;
    thumbnails::render(&panels, 2)
}
