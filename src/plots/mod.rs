//! Pictures: training curves, sample images per class, class counts. PNG and SVG, drawn with
//! plotters and the bundled DejaVu Sans font (no system fonts, so output is the same on every
//! machine and SVGs are byte-for-byte reproducible).

pub mod augmentations;
pub mod confusion;
pub mod counts;
pub mod curves;
pub mod lr_find;
pub mod per_class;
pub mod predictions;
pub mod samples;
pub mod sweep;
pub mod thumbnails;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// Size of charts, in pixels.
pub const SIZE: (u32, u32) = (800, 500);

/// One picture in both formats.
pub struct Picture {
    /// PNG file bytes.
    pub png: Vec<u8>,
    /// SVG document.
    pub svg: String,
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF compiled into the binary; failure would be a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws a chart of `SIZE` with `draw` into an SVG document.
pub(crate) fn chart_svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root)?;
    }
    Ok(out)
}

/// Draws a chart of `SIZE` with `draw` into PNG bytes.
pub(crate) fn chart_png(
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    register_font();
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root)?;
    }
    encode_png(&rgb, SIZE.0, SIZE.1)
}

/// PNG bytes of an RGB buffer.
pub(crate) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("encoding PNG: {e}"))?;
    Ok(bytes)
}

/// Standard base64, for PNGs embedded in SVG documents.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Text safe inside SVG markup.
pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
