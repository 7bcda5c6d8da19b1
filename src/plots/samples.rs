//! A grid of sample images per class, titled with the class, like the tutorial's 5x5 grids of
//! cats and dogs: the first images of each class, as the network sees them (after resizing).

use image::imageops::FilterType;
use image::{imageops, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{base64, encode_png, register_font, xml_escape, Picture};
use crate::data::Images;

const GRID: usize = 5;
const THUMB: u32 = 64;
const GAP: u32 = 4;
const TITLE: u32 = 30;
const PAD: u32 = 16;
const PANEL_W: u32 = GRID as u32 * THUMB + (GRID as u32 - 1) * GAP;
const PANEL_H: u32 = TITLE + PANEL_W;
const PANELS_PER_ROW: usize = 5;

/// Renders up to 5x5 images of each class.
pub fn render(images: &Images) -> Result<Picture, String> {
    let panels: Vec<(String, RgbImage)> = images
        .classes
        .iter()
        .enumerate()
        .map(|(label, class)| {
            let members = (0..images.len())
                .filter(|&i| images.labels[i] == label)
                .take(GRID * GRID);
            (class.clone(), panel(images, members))
        })
        .collect();
    let cols = panels.len().clamp(1, PANELS_PER_ROW) as u32;
    let rows = panels.len().div_ceil(PANELS_PER_ROW).max(1) as u32;
    let (width, height) = (PAD + cols * (PANEL_W + PAD), PAD + rows * (PANEL_H + PAD));
    let origin = |k: usize| {
        (
            PAD + (k as u32 % cols) * (PANEL_W + PAD),
            PAD + (k as u32 / cols) * (PANEL_H + PAD),
        )
    };

    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (k, (_, panel)) in panels.iter().enumerate() {
        let (x, y) = origin(k);
        imageops::replace(&mut canvas, panel, i64::from(x), i64::from(y + TITLE));
    }
    let mut rgb = canvas.into_raw();
    register_font();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let style =
            TextStyle::from(("sans-serif", 20).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (k, (class, _)) in panels.iter().enumerate() {
            let (x, y) = origin(k);
            root.draw_text(class, &style, ((x + PANEL_W / 2) as i32, (y + 4) as i32))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let png = encode_png(&rgb, width, height)?;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"
    );
    for (k, (class, panel)) in panels.iter().enumerate() {
        let (x, y) = origin(k);
        let data = base64(&encode_png(panel.as_raw(), panel.width(), panel.height())?);
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"20\" text-anchor=\"middle\">{}</text>\n\
             <image x=\"{x}\" y=\"{}\" width=\"{PANEL_W}\" height=\"{PANEL_W}\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{data}\"/>\n",
            x + PANEL_W / 2,
            y + 22,
            xml_escape(class),
            y + TITLE
        );
    }
    svg += "</svg>\n";
    Ok(Picture { png, svg })
}

/// One class's grid of thumbnails.
fn panel(images: &Images, members: impl Iterator<Item = usize>) -> RgbImage {
    let mut panel = RgbImage::from_pixel(PANEL_W, PANEL_W, image::Rgb([255, 255, 255]));
    for (slot, i) in members.enumerate() {
        let (x, y) = (
            (slot % GRID) as u32 * (THUMB + GAP),
            (slot / GRID) as u32 * (THUMB + GAP),
        );
        imageops::replace(
            &mut panel,
            &thumbnail(images, i),
            i64::from(x),
            i64::from(y),
        );
    }
    panel
}

/// Image `i` as an RGB thumbnail of `THUMB` pixels a side (pixel-sharp when enlarged).
fn thumbnail(images: &Images, i: usize) -> RgbImage {
    let [c, h, w] = images.shape;
    let px = &images.pixels[i * c * h * w..(i + 1) * c * h * w];
    let plane = h * w;
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = y as usize * w + x as usize;
        let ch = |k: usize| px[k.min(c - 1) * plane + at];
        image::Rgb([ch(0), ch(1), ch(2)])
    });
    let filter = if h.max(w) < THUMB as usize {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    imageops::resize(&img, THUMB, THUMB, filter)
}
