//! The only place that decodes image files: any format the `image` crate reads here (PNG, JPEG
//! including greyscale and CMYK, GIF, BMP, WebP; detected from the content, not the extension),
//! turned upright by its EXIF orientation, converted to the colour mode, and resized with the
//! configured [`Interpolation`].
//!
//! JPEGs are decoded by `image`'s zune-jpeg backend, which runs on the calling thread (the
//! caller spreads files over the cores); resizing is `fast_image_resize`, whose SIMD paths use
//! the same fixed-point arithmetic as its scalar one, so the bytes do not depend on the CPU.
//! [`PIXELS_VERSION`] names both, and goes into the image cache's key, so a cache written by
//! another decoder is rebuilt rather than read as if it were this one's.
//!
//! Safety limits keep a hostile or broken file from taking the machine down: files over
//! `MAX_FILE_BYTES`, images over `MAX_SIDE` pixels on a side, and decoders asking for more than
//! `MAX_DECODER_BYTES` are rejected before the memory is allocated.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::error::ImageError;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

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

/// How an image is resized to `data.image_size` (`interpolation` of Keras'
/// `image_dataset_from_directory`). Images already of that size are used as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// A triangle filter widened to the scale when shrinking, so every input pixel counts (as
    /// Pillow's `BILINEAR` and `tf.image.resize(..., antialias=True)`); plain two-by-two
    /// bilinear sampling would alias when a 500 px photo becomes 128 px.
    #[default]
    Bilinear,
    /// The input pixel under each output pixel's centre (`floor((x + 0.5) * scale)`, as
    /// Pillow's `NEAREST` and TensorFlow's half-pixel-centre nearest neighbour).
    Nearest,
    /// The mean of the input pixels whose centres fall inside each output pixel (a box filter:
    /// exactly Keras' area averaging when the scale is a whole number).
    Area,
}

impl Interpolation {
    /// The convolution filter, for the two that are convolutions.
    fn filter(self) -> Option<FilterType> {
        match self {
            Interpolation::Bilinear => Some(FilterType::Bilinear),
            Interpolation::Nearest => None,
            Interpolation::Area => Some(FilterType::Box),
        }
    }
}

/// How an image whose aspect ratio differs from `data.image_size`'s gets there (Keras'
/// `crop_to_aspect_ratio` and `pad_to_aspect_ratio` of `image_dataset_from_directory`, with
/// its rounding). Either way the pixels then go through the configured [`Interpolation`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Resized to the size as it is, so a photo of another shape is squashed or stretched
    /// (Keras' default).
    #[default]
    Stretch,
    /// The largest centred window of the target's aspect ratio, resized to the size: nothing
    /// is distorted, the edges of the longer side are cut off (`crop_to_aspect_ratio`).
    Crop,
    /// Resized to fit inside the size, then centred on black: nothing is distorted or cut
    /// off, the shorter side gets black bars (`pad_to_aspect_ratio`). Resized first, as
    /// `image_dataset_from_directory` does (TensorFlow's `resize_with_pad`), so the bars stay
    /// pure black; Keras' `Resizing` layer pads first and blurs black into the edge pixels.
    Pad,
}

impl Resize {
    /// True for the default, which resolved configs and the image cache's key leave out so
    /// that configs, sweep trial names and caches from before the key existed stay valid.
    pub fn is_default(&self) -> bool {
        *self == Resize::default()
    }
}

/// The decoder and resizer behind the pixels; part of the image cache's key.
pub const PIXELS_VERSION: &str = "image-0.25.6 zune-jpeg-0.4 fast_image_resize-6 nearest-exact";

/// Largest file read (256 MiB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest width or height decoded.
pub const MAX_SIDE: u32 = 16_384;
/// Most memory a decoder may allocate (512 MiB).
pub const MAX_DECODER_BYTES: u64 = 512 << 20;

/// Why a file cannot be used.
pub type Rejection = (Reason, String);

/// Decodes `path` to CHW bytes of `image_size` (`[height, width]`), or says why it cannot.
pub fn decode(
    path: &Path,
    image_size: [usize; 2],
    mode: ColorMode,
    interpolation: Interpolation,
    fit: Resize,
) -> Result<Vec<u8>, Rejection> {
    decode_bytes(&read(path)?, image_size, mode, interpolation, fit)
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
/// The bytes of `path`, refused past [`MAX_FILE_BYTES`]: a regular file by its length before
/// reading, anything else (a pipe such as `predict <(curl …)`) one byte past the limit.
fn read(path: &Path) -> Result<Vec<u8>, Rejection> {
    let too_large = |len: u64| (Reason::TooLarge, format!("{len} bytes is over the {MAX_FILE_BYTES}-byte limit"));
    let len = std::fs::metadata(path).map_err(|e| (Reason::Unreadable, e.to_string()))?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    let limit = crate::results::bounded::Limit { what: "image", bytes: MAX_FILE_BYTES, hint: "" };
    let bytes = crate::results::bounded::read(path, &limit).map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => (Reason::TooLarge, format!("over the {MAX_FILE_BYTES}-byte limit")),
        _ => (Reason::Unreadable, e.to_string()),
    })?;
    if bytes.is_empty() {
        return Err((Reason::Empty, "the file is empty (0 bytes)".into()));
    }
    Ok(bytes)
}

/// Decodes an image held in memory; see [`decode`].
pub fn decode_bytes(
    bytes: &[u8],
    image_size: [usize; 2],
    mode: ColorMode,
    interpolation: Interpolation,
    fit: Resize,
) -> Result<Vec<u8>, Rejection> {
    let img = upright(bytes)?;
    let (width, height) = (img.width(), img.height());
    let pixels = match mode {
        ColorMode::Grayscale => img.into_luma8().into_raw(),
        ColorMode::Rgb => img.into_rgb8().into_raw(),
    };
    let hwc = match fit {
        Resize::Stretch => resize(pixels, [height, width], mode, image_size, interpolation),
        Resize::Crop => {
            let window = crop_window([height, width], image_size);
            let cropped = crop(&pixels, [height, width], mode.channels(), window);
            resize(cropped, [window.height, window.width], mode, image_size, interpolation)
        }
        Resize::Pad => {
            let window = pad_window([height, width], image_size);
            let inner =
                resize(pixels, [height, width], mode, [window.height as usize, window.width as usize], interpolation);
            pad(&inner, mode.channels(), window, image_size)
        }
    };
    Ok(match mode {
        // HWC → CHW.
        ColorMode::Rgb => (0..3).flat_map(|c| hwc.iter().skip(c).step_by(3).copied()).collect(),
        ColorMode::Grayscale => hwc,
    })
}

thread_local! {
    /// One resizer per thread, so its scratch buffers are reused from image to image.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// `hwc` (`[height, width]`, interleaved channels of `mode`) resized to `[h, w]`.
fn resize(
    hwc: Vec<u8>,
    [height, width]: [u32; 2],
    mode: ColorMode,
    [h, w]: [usize; 2],
    interpolation: Interpolation,
) -> Vec<u8> {
    if (height as usize, width as usize) == (h, w) {
        return hwc;
    }
    let Some(filter) = interpolation.filter() else { return nearest(&hwc, [height, width], mode.channels(), [h, w]) };
    let pixel_type = match mode {
        ColorMode::Grayscale => PixelType::U8,
        ColorMode::Rgb => PixelType::U8x3,
    };
    // Byte pixels have no alignment, and the buffer holds exactly width x height of them.
    let src = ImageRef::new(width, height, &hwc, pixel_type).expect("a buffer of the decoded size");
    let mut dst = Image::new(w as u32, h as u32, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &options))
        .expect("source and destination share one pixel type");
    dst.into_vec()
}

/// A rectangle of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// The part of a `[height, width]` image that `Resize::Crop` keeps for a target of
/// `[h, w]`: Keras' `smart_resize` as `image_dataset_from_directory` runs it (on tensors, so
/// in float32): the window's side is `int(float32(side · target) / target_other)`, between 1
/// and the image's side, and it starts `int(float32(side - window) / 2)` in. float32, not
/// exact fractions, so that the rare quotient float32 rounds up to a whole number (a side
/// over 2^24 / target, or a remainder below its rounding) gives Keras' window too.
pub fn crop_window([height, width]: [u32; 2], [h, w]: [usize; 2]) -> Window {
    let side =
        |a: u32, b: usize, c: usize, limit: u32| (((u64::from(a) * b as u64) as f32 / c as f32) as u32).clamp(1, limit);
    let (crop_height, crop_width) = (side(width, h, w, height), side(height, w, h, width));
    let start = |total: u32, part: u32| ((total - part) as f32 / 2.0) as u32;
    Window { top: start(height, crop_height), left: start(width, crop_width), height: crop_height, width: crop_width }
}

/// Where the resized image goes inside the `[h, w]` output for `Resize::Pad`: TensorFlow's
/// `resize_with_pad`, which `image_dataset_from_directory` calls (in float32): the image is
/// scaled by `1 / max(width / w, height / h)`, each side rounded down (at least 1 pixel here,
/// where TensorFlow would fail on a zero-sized image), and placed at
/// `floor((target - scaled side) / 2)`, the scaled side before rounding.
pub fn pad_window([height, width]: [u32; 2], [h, w]: [usize; 2]) -> Window {
    let (fh, fw, th, tw) = (height as f32, width as f32, h as f32, w as f32);
    let ratio = (fw / tw).max(fh / th);
    let (scaled_h, scaled_w) = (fh / ratio, fw / ratio);
    let fit = |scaled: f32, target: usize| (scaled.floor() as u32).clamp(1, target as u32);
    let offset = |scaled: f32, target: f32| ((target - scaled) / 2.0).floor().max(0.0) as u32;
    Window { top: offset(scaled_h, th), left: offset(scaled_w, tw), height: fit(scaled_h, h), width: fit(scaled_w, w) }
}

/// The pixels of `window` in `hwc` (`[height, width]`, `c` interleaved channels).
fn crop(hwc: &[u8], [_, width]: [u32; 2], c: usize, window: Window) -> Vec<u8> {
    let (width, left, cols) = (width as usize, window.left as usize, window.width as usize);
    let rows = window.top as usize..(window.top + window.height) as usize;
    rows.flat_map(|y| &hwc[(y * width + left) * c..][..cols * c]).copied().collect()
}

/// `inner` (the window's size, `c` interleaved channels) at `window` in a black `[h, w]` image.
fn pad(inner: &[u8], c: usize, window: Window, [h, w]: [usize; 2]) -> Vec<u8> {
    let mut out = vec![0; h * w * c];
    let (top, left, cols) = (window.top as usize, window.left as usize, window.width as usize);
    for (y, row) in inner.chunks(cols * c).enumerate() {
        out[((top + y) * w + left) * c..][..cols * c].copy_from_slice(row);
    }
    out
}

/// Nearest neighbour: output pixel `x` takes input pixel `floor((x + 0.5) * in / out)`, in
/// exact integer arithmetic, so a centre that falls exactly on a pixel boundary (40 to 50 px:
/// output 7 samples 6.0) picks the pixel Pillow picks, not its neighbour by a rounding error.
fn nearest(hwc: &[u8], [height, width]: [u32; 2], c: usize, [h, w]: [usize; 2]) -> Vec<u8> {
    let (height, width) = (height as usize, width as usize);
    let source = |x: usize, out: usize, len: usize| ((2 * x + 1) * len / (2 * out)).min(len - 1);
    let columns: Vec<usize> = (0..w).map(|x| source(x, w, width)).collect();
    let mut out = Vec::with_capacity(h * w * c);
    for y in 0..h {
        let row = &hwc[source(y, h, height) * width * c..][..width * c];
        for &x in &columns {
            out.extend_from_slice(&row[x * c..][..c]);
        }
    }
    out
}

/// Decodes `bytes` within the safety limits and turns a JPEG upright by its EXIF orientation.
fn upright(bytes: &[u8]) -> Result<DynamicImage, Rejection> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| (Reason::Unreadable, e.to_string()))?;
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
