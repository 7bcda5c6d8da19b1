//! The only place that decodes image files: any format the `image` crate reads (PNG, JPEG,
//! GIF, BMP; detected from the content, not the extension), converted to the colour mode and
//! resized with bilinear filtering (Keras' default interpolation).

use std::path::Path;

use image::imageops::FilterType;
use image::DynamicImage;

use crate::config::ColorMode;

/// Decodes `path` to CHW bytes of `image_size` (`[height, width]`), or says why it cannot.
pub fn decode(path: &Path, image_size: [usize; 2], mode: ColorMode) -> Result<Vec<u8>, String> {
    let reader = image::io::Reader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image file (unknown format)".into());
    }
    let img = reader
        .decode()
        .map_err(|e| format!("corrupt or unsupported image: {e}"))?;
    let [h, w] = image_size;
    let img = match mode {
        ColorMode::Grayscale => DynamicImage::ImageLuma8(img.to_luma8()),
        ColorMode::Rgb => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => {
            // HWC → CHW.
            let hwc = rgb.into_raw();
            (0..3)
                .flat_map(|c| hwc.iter().skip(c).step_by(3).copied())
                .collect()
        }
        other => other.into_luma8().into_raw(),
    })
}
