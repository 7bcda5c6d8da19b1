//! The only place that decodes image files: any format the `image` crate reads here (PNG, JPEG
//! including greyscale and CMYK, GIF, BMP, WebP; detected from the content, not the extension),
//! turned upright by its EXIF orientation, converted to the colour mode, and resized with
//! bilinear filtering (Keras' default interpolation).
//!
//! Safety limits keep a hostile or broken file from taking the machine down: files over
//! `MAX_FILE_BYTES`, images over `MAX_SIDE` pixels on a side, and decoders asking for more than
//! `MAX_DECODER_BYTES` are rejected before the memory is allocated.

use std::io::Cursor;
use std::path::Path;

use image::error::ImageError;
use image::imageops::FilterType;
use image::io::{Limits, Reader};
use image::{DynamicImage, ImageFormat};

use super::orientation;
use super::quarantine::Reason;
use serde::{Deserialize, Serialize};

/// Channels images are converted to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColorMode {
    /// One channel.
    Grayscale,
    /// Three channels.
    #[default]
    Rgb,
}

impl ColorMode {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Grayscale => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// Largest file read (256 MiB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest width or height decoded.
pub const MAX_SIDE: u32 = 16_384;
/// Most memory a decoder may allocate (512 MiB).
pub const MAX_DECODER_BYTES: u64 = 512 << 20;

/// Why a file cannot be used.
pub type Rejection = (Reason, String);

/// Decodes `path` to CHW bytes of `image_size` (`[height, width]`), or says why it cannot.
pub fn decode(path: &Path, image_size: [usize; 2], mode: ColorMode) -> Result<Vec<u8>, Rejection> {
    decode_bytes(&read(path)?, image_size, mode)
}

/// What a look at one image tells about a dataset before it is decoded whole: its size as
/// shown (after the EXIF orientation) and whether it holds any colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// True when the image has one channel, or three that are equal everywhere (grey
    /// pictures are often saved as RGB JPEGs).
    pub grayscale: bool,
}

/// Looks at `path` as `decode` would, without resizing it.
pub fn probe(path: &Path) -> Result<Probe, Rejection> {
    let img = upright(&read(path)?)?;
    let grayscale = match &img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLumaA8(_) => true,
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => true,
        other => other.to_rgb8().pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
    };
    Ok(Probe { height: img.height(), width: img.width(), grayscale })
}

/// The bytes of `path`, refusing empty and oversized files before reading them.
fn read(path: &Path) -> Result<Vec<u8>, Rejection> {
    let len = std::fs::metadata(path).map_err(|e| (Reason::Unreadable, e.to_string()))?.len();
    if len == 0 {
        return Err((Reason::Empty, "the file is empty (0 bytes)".into()));
    }
    if len > MAX_FILE_BYTES {
        return Err((Reason::TooLarge, format!("{len} bytes is over the {MAX_FILE_BYTES}-byte limit")));
    }
    std::fs::read(path).map_err(|e| (Reason::Unreadable, e.to_string()))
}

/// Decodes an image held in memory; see [`decode`].
pub fn decode_bytes(bytes: &[u8], image_size: [usize; 2], mode: ColorMode) -> Result<Vec<u8>, Rejection> {
    let img = upright(bytes)?;
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
            (0..3).flat_map(|c| hwc.iter().skip(c).step_by(3).copied()).collect()
        }
        other => other.into_luma8().into_raw(),
    })
}

/// Decodes `bytes` within the safety limits and turns a JPEG upright by its EXIF orientation.
fn upright(bytes: &[u8]) -> Result<DynamicImage, Rejection> {
    let mut reader =
        Reader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| (Reason::Unreadable, e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err((Reason::NotAnImage, "not an image file (no known image signature)".into()));
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        ImageError::Limits(l) => {
            (Reason::TooLarge, format!("{l} (limits: {MAX_SIDE} px a side, {MAX_DECODER_BYTES} bytes)"))
        }
        ImageError::Unsupported(u) => (Reason::Unsupported, u.to_string()),
        other => (Reason::Corrupt, format!("truncated or corrupt {format:?}: {other}")),
    })?;
    Ok(match (format, orientation::exif_orientation(bytes)) {
        (ImageFormat::Jpeg, Some(o)) => orientation::apply(img, o),
        _ => img,
    })
}
