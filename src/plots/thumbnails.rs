//! Titled panels of image thumbnails, as PNG and SVG (the SVG embeds each panel as a PNG).

use image::imageops::FilterType;
use image::{imageops, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{base64, encode_png, register_font, xml_escape, Picture};

/// Default thumbnail side, in pixels.
pub const THUMB: u32 = 64;
const GAP: u32 = 4;
const TITLE: u32 = 30;
const PAD: u32 = 16;

/// A titled block of thumbnails, `columns` to a row.
pub struct Panel {
    /// Shown above the thumbnails.
    pub title: String,
    /// The images, already thumbnail-sized (see [`thumbnail`]).
    pub images: Vec<RgbImage>,
    /// Thumbnails per row.
    pub columns: usize,
    /// Rows to reserve (so panels of a picture line up even when one has fewer images).
    pub rows: usize,
    /// Side of each thumbnail (the images' size), in pixels.
    pub thumb: u32,
    /// Title font size, in pixels.
    pub title_size: u32,
    /// Title colour (red marks a mistake in prediction grids).
    pub title_color: [u8; 3],
}

impl Panel {
    /// A panel of `THUMB`-pixel thumbnails with a 20-pixel black title.
    pub fn new(title: String, images: Vec<RgbImage>, columns: usize, rows: usize) -> Panel {
        Panel { title, images, columns, rows, thumb: THUMB, title_size: 20, title_color: [0, 0, 0] }
    }
}

impl Panel {
    fn size(&self) -> (u32, u32) {
        let side = |n: usize| n as u32 * self.thumb + (n as u32).saturating_sub(1) * GAP;
        (side(self.columns), side(self.rows))
    }

    fn grid(&self) -> RgbImage {
        let (w, h) = self.size();
        let mut grid = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        for (slot, img) in self.images.iter().enumerate() {
            let step = self.thumb + GAP;
            let (x, y) = ((slot % self.columns) as u32 * step, (slot / self.columns) as u32 * step);
            imageops::replace(&mut grid, img, i64::from(x), i64::from(y));
        }
        grid
    }
}

/// Lays `panels` out `per_row` to a row (all panels the size of the first).
pub fn render(panels: &[Panel], per_row: usize) -> Result<Picture, String> {
    let (pw, ph) = panels.first().map_or((THUMB, THUMB), Panel::size);
    let ph = ph + TITLE;
    let cols = panels.len().clamp(1, per_row) as u32;
    let rows = panels.len().div_ceil(per_row).max(1) as u32;
    let (width, height) = (PAD + cols * (pw + PAD), PAD + rows * (ph + PAD));
    let origin = |k: usize| (PAD + (k as u32 % cols) * (pw + PAD), PAD + (k as u32 / cols) * (ph + PAD));

    let grids: Vec<RgbImage> = panels.iter().map(Panel::grid).collect();
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (k, grid) in grids.iter().enumerate() {
        let (x, y) = origin(k);
        imageops::replace(&mut canvas, grid, i64::from(x), i64::from(y + TITLE));
    }
    let mut rgb = canvas.into_raw();
    register_font();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        for (k, panel) in panels.iter().enumerate() {
            let (x, y) = origin(k);
            let [r, g, b] = panel.title_color;
            let color = RGBColor(r, g, b);
            let style = TextStyle::from(("sans-serif", panel.title_size).into_font())
                .color(&color)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw_text(&panel.title, &style, ((x + pw / 2) as i32, (y + 4) as i32)).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let png = encode_png(&rgb, width, height)?;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"
    );
    for (k, (panel, grid)) in panels.iter().zip(&grids).enumerate() {
        let (x, y) = origin(k);
        let data = base64(&encode_png(grid.as_raw(), grid.width(), grid.height())?);
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"{}\" fill=\"rgb({},{},{})\" text-anchor=\"middle\">{}</text>\n\
             <image x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{}\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{data}\"/>\n",
            x + pw / 2,
            y + 4 + panel.title_size,
            panel.title_size,
            panel.title_color[0],
            panel.title_color[1],
            panel.title_color[2],
            xml_escape(&panel.title),
            y + TITLE,
            grid.width(),
            grid.height()
        );
    }
    svg += "</svg>\n";
    Ok(Picture { png, svg })
}

/// A CHW image with values in 0-255 as an RGB thumbnail of `THUMB` pixels a side.
pub fn thumbnail(chw: &[f32], shape: [usize; 3]) -> RgbImage {
    thumbnail_sized(chw, shape, THUMB)
}

/// A CHW image with values in 0-255 as an RGB thumbnail of `side` pixels (pixel-sharp when
/// enlarged).
pub fn thumbnail_sized(chw: &[f32], [c, h, w]: [usize; 3], side: u32) -> RgbImage {
    let plane = h * w;
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = y as usize * w + x as usize;
        let ch = |k: usize| chw[k.min(c - 1) * plane + at].round().clamp(0.0, 255.0) as u8;
        image::Rgb([ch(0), ch(1), ch(2)])
    });
    let filter = if h.max(w) < side as usize { FilterType::Nearest } else { FilterType::Triangle };
    imageops::resize(&img, side, side, filter)
}
