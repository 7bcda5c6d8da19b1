//! Random augmentation of training images with Keras `ImageDataGenerator` semantics, applied
//! to the training split only.
//!
//! # What is drawn, and how (Keras `get_random_transform`, in the same order)
//! - `theta` ~ U(-rotation_range, rotation_range) degrees;
//! - the height shift `ty` (rows, Keras' y), then the width shift `tx` (columns, Keras' x): a
//!   float `s` gives U(-s, s); an integer `n` gives k·(±1) with k uniform in {0, …, n-1}; a
//!   list gives one of its values times ±1; when the largest value is below 1 it is a fraction
//!   of the image height (width) and is multiplied by it;
//! - `shear` ~ U(-shear_range, shear_range) degrees;
//! - `zx` (columns), `zy` (rows) ~ U(lower, upper) independently, in that order, where a float
//!   `z` means `[1 - z, 1 + z]`;
//! - horizontal and vertical flips with probability ½ each when enabled;
//! - a channel shift ~ U(-channel_shift_range, channel_shift_range) (pixel units, 0-255);
//! - a brightness factor ~ U(brightness_range).
//!
//! Keras draws the height shift into its `tx`, and its `apply_transform` moves the columns by
//! `tx` (tf-keras issue 310: `height_shift_range` shifts images sideways). We keep the
//! documented meaning, a height shift moves rows, and draw in Keras' order, so the same
//! numbers come out of the same stream.
//!
//! # The transform (Keras 3's `apply_affine_transform`)
//! Keras builds its matrix in `(x, y, 1)` = `(col, row, 1)` coordinates, with `s` the shear
//! angle:
//! ```text
//! rotation = [[cos θ, -sin θ, 0], [sin θ, cos θ, 0], [0, 0, 1]]
//! shift    = [[1, 0, tx], [0, 1, ty], [0, 0, 1]]
//! shear    = [[1, -sin s, 0], [0, cos s, 0], [0, 0, 1]]
//! zoom     = [[zx, 0, 0], [0, zy, 0], [0, 0, 1]]
//! T        = rotation · shift · shear · zoom                  (Keras' transform_matrix)
//! input(x, y) = to_centre · T · from_centre · output(x, y)
//! ```
//! then swaps the axes to index the array by `(row, col)`, as we do. Like
//! `scipy.ndimage.affine_transform`, which Keras calls, the matrix maps each output pixel to the
//! input point it is sampled from. The centre is `((w-1)/2, (h-1)/2)`, the true centre of the
//! pixel grid. Keras 3 computes `h/2 - 0.5` and `w/2 - 0.5`, the same numbers, but pairs the
//! height with x, so for h ≠ w it turns, shears and zooms about a point off the centre; we do
//! not copy that (square images match Keras exactly). Flips, which Keras applies afterwards, are
//! folded into the same matrix, so every geometric change is one resampling pass.
//!
//! # Sampling (scipy's `affine_transform`, order 1 or 0)
//! A point outside the image is first brought inside as scipy's `map_coordinate` does:
//! `constant` gives `cval` for any point beyond the first or last pixel centre (no blending
//! with `cval`), `nearest` clamps, `reflect` mirrors about the pixel edges (`dcba|abcd|dcba`),
//! and `wrap` repeats with period n-1 (scipy's `wrap`: the first and last pixels overlap, so
//! `abcd` continues `bcd`, not `abcd`). Bilinear sampling then weighs the two taps along each
//! axis (a tap past the edge is folded the same way); nearest sampling rounds halves up.
//! Then the channel shift (clipped to the transformed image's min and max, as Keras does) and
//! the brightness factor, which Keras applies through PIL on 8-bit pixels: values are cut to
//! whole numbers, multiplied in single precision and cut again (clipped to 0-255). Values are
//! scaled to [0, 1].
//!
//! # Determinism
//! The parameters of an image depend only on (seed, epoch, image index), through the
//! `Augment` stream, so batches are the same whatever the thread count or batch order.

use std::fmt;

use rand::Rng;
use rayon::prelude::*;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::seed::{self, Stream};

/// `[augment]`: Keras `ImageDataGenerator` arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Degrees; rotations are drawn from ±rotation_range.
    #[serde(default)]
    pub rotation_range: f64,
    /// Horizontal shift: fraction of the width (< 1), pixels (≥ 1, or an integer), or a list.
    #[serde(default)]
    pub width_shift_range: ShiftRange,
    /// Vertical shift: fraction of the height (< 1), pixels (≥ 1, or an integer), or a list.
    #[serde(default)]
    pub height_shift_range: ShiftRange,
    /// Shear angle in degrees, drawn from ±shear_range.
    #[serde(default)]
    pub shear_range: f64,
    /// `z` for `[1 - z, 1 + z]`, or `[lower, upper]`; below 1 zooms in.
    #[serde(default)]
    pub zoom_range: ZoomRange,
    /// Mirror left-right with probability ½.
    #[serde(default)]
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability ½.
    #[serde(default)]
    pub vertical_flip: bool,
    /// `[lower, upper]` brightness factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness_range: Option<[f64; 2]>,
    /// Pixel units (0-255) added to every channel, drawn from ±channel_shift_range.
    #[serde(default)]
    pub channel_shift_range: f64,
    /// What lies outside the image: `nearest` (Keras' default), `constant`, `reflect`, `wrap`.
    #[serde(default)]
    pub fill_mode: FillMode,
    /// Value (0-255) outside the image for `fill_mode = "constant"`.
    #[serde(default)]
    pub cval: f64,
    /// Resampling: `bilinear` (Keras' default, spline order 1) or `nearest`.
    #[serde(default)]
    pub interpolation: Interpolation,
}

/// How points outside the input are filled (scipy `ndimage` modes, as Keras uses them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// The nearest edge pixel: `aaaa|abcd|dddd`.
    #[default]
    Nearest,
    /// `cval`: `kkkk|abcd|kkkk`.
    Constant,
    /// Mirrored about the edge: `dcba|abcd|dcba`.
    Reflect,
    /// Tiled: `abcd|abcd|abcd`.
    Wrap,
}

/// Resampling filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// The closest input pixel.
    Nearest,
    /// Weighted mean of the four closest input pixels.
    #[default]
    Bilinear,
}

/// A shift range as Keras accepts it.
#[derive(Clone, Debug, PartialEq)]
pub enum ShiftRange {
    /// A float: uniform in ±value (a fraction of the size when below 1).
    Uniform(f64),
    /// An integer `n`: k·(±1) pixels with k uniform in 0..n.
    Pixels(u64),
    /// A list: one of the values times ±1 (fractions of the size when all below 1).
    Choice(Vec<f64>),
}

impl Default for ShiftRange {
    fn default() -> Self {
        ShiftRange::Uniform(0.0)
    }
}

/// A zoom range: `[lower, upper]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZoomRange(pub [f64; 2]);

impl Default for ZoomRange {
    fn default() -> Self {
        ZoomRange([1.0, 1.0])
    }
}

/// The random draw for one image.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params {
    /// Rotation, degrees.
    pub theta: f64,
    /// Shift along x, the columns (pixels; Keras' `tx`).
    pub tx: f64,
    /// Shift along y, the rows (pixels; Keras' `ty`).
    pub ty: f64,
    /// Shear, degrees.
    pub shear: f64,
    /// Zoom along x, the columns.
    pub zx: f64,
    /// Zoom along y, the rows.
    pub zy: f64,
    /// Mirror left-right.
    pub flip_horizontal: bool,
    /// Mirror top-bottom.
    pub flip_vertical: bool,
    /// Added to every channel (0-255 units).
    pub channel_shift: Option<f64>,
    /// Multiplies every value.
    pub brightness: Option<f64>,
}

impl AugmentConfig {
    /// Problems with the values, as `(key, message)` pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &'static str, msg: String| {
            if !ok {
                out.push((key, msg));
            }
        };
        let r = self.rotation_range;
        check(r.is_finite() && r >= 0.0, "rotation_range", format!("rotation_range {r} must be 0 or more degrees"));
        let s = self.shear_range;
        check(
            s.is_finite() && (0.0..90.0).contains(&s),
            "shear_range",
            format!("shear_range {s} must be from 0 up to 90 degrees"),
        );
        for (key, range) in
            [("width_shift_range", &self.width_shift_range), ("height_shift_range", &self.height_shift_range)]
        {
            let ok = match range {
                ShiftRange::Uniform(v) => v.is_finite() && *v >= 0.0,
                ShiftRange::Pixels(_) => true,
                ShiftRange::Choice(values) => !values.is_empty() && values.iter().all(|v| v.is_finite()),
            };
            check(ok, key, format!("{key} must be a non-negative number or a non-empty list of numbers"));
        }
        let [lo, hi] = self.zoom_range.0;
        check(
            lo > 0.0 && lo <= hi && hi.is_finite(),
            "zoom_range",
            format!("zoom_range [{lo}, {hi}] must have 0 < lower ≤ upper (a float z means [1 - z, 1 + z], so z < 1)"),
        );
        if let Some([lo, hi]) = self.brightness_range {
            check(
                lo >= 0.0 && lo <= hi && hi.is_finite(),
                "brightness_range",
                format!("brightness_range [{lo}, {hi}] must have 0 ≤ lower ≤ upper"),
            );
        }
        let c = self.channel_shift_range;
        check(c.is_finite() && c >= 0.0, "channel_shift_range", format!("channel_shift_range {c} must be 0 or more"));
        check(
            (0.0..=255.0).contains(&self.cval),
            "cval",
            format!("cval {} must be a pixel value from 0 to 255", self.cval),
        );
        out
    }

    /// Draws the parameters for one image of `h`x`w` pixels, in Keras' order.
    pub fn draw(&self, h: usize, w: usize, rng: &mut impl Rng) -> Params {
        let uniform = |rng: &mut dyn rand::RngCore, lo: f64, hi: f64| if lo < hi { rng.gen_range(lo..hi) } else { lo };
        let theta =
            if self.rotation_range > 0.0 { uniform(rng, -self.rotation_range, self.rotation_range) } else { 0.0 };
        let ty = shift(&self.height_shift_range, h, rng);
        let tx = shift(&self.width_shift_range, w, rng);
        let shear = if self.shear_range > 0.0 { uniform(rng, -self.shear_range, self.shear_range) } else { 0.0 };
        let [lo, hi] = self.zoom_range.0;
        let (zx, zy) = if lo == 1.0 && hi == 1.0 { (1.0, 1.0) } else { (uniform(rng, lo, hi), uniform(rng, lo, hi)) };
        let flip_horizontal = self.horizontal_flip && rng.gen::<f64>() < 0.5;
        let flip_vertical = self.vertical_flip && rng.gen::<f64>() < 0.5;
        let c = self.channel_shift_range;
        let channel_shift = (c > 0.0).then(|| uniform(rng, -c, c));
        let brightness = self.brightness_range.map(|[lo, hi]| uniform(rng, lo, hi));
        Params { theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical, channel_shift, brightness }
    }
}

fn shift(range: &ShiftRange, size: usize, rng: &mut impl Rng) -> f64 {
    let sign = |rng: &mut dyn rand::RngCore| if rng.gen::<bool>() { 1.0 } else { -1.0 };
    let (value, max) = match range {
        ShiftRange::Uniform(s) if *s > 0.0 => (rng.gen_range(-s..*s), *s),
        ShiftRange::Uniform(_) | ShiftRange::Pixels(0) => return 0.0,
        ShiftRange::Pixels(n) => return rng.gen_range(0..*n) as f64 * sign(rng),
        ShiftRange::Choice(values) => {
            let v = values[rng.gen_range(0..values.len())];
            (v * sign(rng), values.iter().fold(f64::MIN, |m, &v| m.max(v)))
        }
    };
    if max < 1.0 {
        value * size as f64
    } else {
        value
    }
}

/// An affine map from output `(row, col)` to input `(row, col)`: `[a b e; c d f]`.
pub type Affine = [[f64; 3]; 2];

impl Params {
    /// True when the draw changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Params { zx: 1.0, zy: 1.0, ..Params::default() }
    }

    /// Keras' `rotation @ shift @ shear @ zoom` in `(x, y)`, centred, turned into `(row, col)`
    /// with the flips folded in.
    pub fn matrix(&self, h: usize, w: usize) -> Affine {
        type M = [[f64; 3]; 3];
        let mul = |a: M, b: M| -> M {
            let mut c = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
                }
            }
            c
        };
        let (t, s) = (self.theta.to_radians(), self.shear.to_radians());
        let rotation = [[t.cos(), -t.sin(), 0.0], [t.sin(), t.cos(), 0.0], [0.0, 0.0, 1.0]];
        let shift = [[1.0, 0.0, self.tx], [0.0, 1.0, self.ty], [0.0, 0.0, 1.0]];
        let shear = [[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]];
        let zoom = [[self.zx, 0.0, 0.0], [0.0, self.zy, 0.0], [0.0, 0.0, 1.0]];
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let to_centre = [[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]];
        let from_centre = [[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]];
        // Flips act on the output grid after the transform: out'(r, c) = out(h-1-r, w-1-c).
        let flip = [
            [if self.flip_vertical { -1.0 } else { 1.0 }, 0.0, if self.flip_vertical { h as f64 - 1.0 } else { 0.0 }],
            [
                0.0,
                if self.flip_horizontal { -1.0 } else { 1.0 },
                if self.flip_horizontal { w as f64 - 1.0 } else { 0.0 },
            ],
            [0.0, 0.0, 1.0],
        ];
        let m =
            [rotation, shift, shear, zoom].into_iter().fold([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], mul);
        let m = mul(mul(to_centre, m), from_centre);
        // (x, y) to (row, col): swap both the rows and the columns of the matrix.
        let m = [[m[1][1], m[1][0], m[1][2]], [m[0][1], m[0][0], m[0][2]], [0.0, 0.0, 1.0]];
        let m = mul(m, flip);
        [m[0], m[1]]
    }
}

/// `v.floor()` as an integer without a libm call (the baseline x86-64 target has no
/// rounding instruction, and this runs twice per output pixel).
#[inline]
fn floor(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t - 1
    } else {
        t
    }
}

/// Brings a point `v` outside the pixel centres `0..=n-1` of an axis back inside, as scipy's
/// `map_coordinate` does (None: `cval`). Reflected points may land in `[-1, 0)`, where the
/// taps fold.
#[inline]
fn locate(v: f64, n: i64, mode: FillMode) -> Option<f64> {
    let last = (n - 1) as f64;
    if (0.0..=last).contains(&v) {
        return Some(v);
    }
    let trunc = |v: f64| v as i64 as f64;
    Some(match mode {
        FillMode::Constant => return None,
        FillMode::Nearest => v.clamp(0.0, last),
        _ if n <= 1 => 0.0,
        FillMode::Wrap if v < 0.0 => v + last * (trunc(-v / last) + 1.0),
        FillMode::Wrap => v - last * trunc(v / last),
        FillMode::Reflect => {
            let period = 2.0 * n as f64;
            if v < 0.0 {
                let v = if v < -period { period * trunc(-v / period) + v } else { v };
                if v < -(n as f64) {
                    v + period
                } else {
                    -v - 1.0
                }
            } else {
                let v = v - period * trunc(v / period);
                if v >= n as f64 {
                    period - v - 1.0
                } else {
                    v
                }
            }
        }
    })
}

/// Maps a tap index outside `0..n` back inside (None: use `cval`).
#[inline]
fn fold(i: i64, n: i64, mode: FillMode) -> Option<usize> {
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    Some(match mode {
        FillMode::Constant => return None,
        FillMode::Nearest => i.clamp(0, n - 1),
        FillMode::Wrap => i.rem_euclid(n),
        FillMode::Reflect => {
            let p = i.rem_euclid(2 * n);
            if p < n {
                p
            } else {
                2 * n - 1 - p
            }
        }
    } as usize)
}

/// Augments one CHW image of bytes into `out` (values scaled to [0, 1]).
pub fn apply(cfg: &AugmentConfig, p: &Params, img: &[u8], [_, h, w]: [usize; 3], out: &mut [f32]) {
    let plane = h * w;
    if p.is_identity() {
        out.iter_mut().zip(img).for_each(|(o, &v)| *o = f32::from(v) / 255.0);
        return;
    }
    let [[a, b, e], [cc, d, f]] = p.matrix(h, w);
    let (hi, wi) = (h as i64, w as i64);
    // Values stay in 0-255 while the channel shift or brightness still needs them; otherwise the
    // final division by 255 is folded into the interpolation weights (one pass less).
    let late = p.channel_shift.is_some() || p.brightness.is_some();
    let scale = if late { 1.0 } else { 1.0 / 255.0 };
    let cval = cfg.cval as f32 * scale;
    let fill = cfg.fill_mode;
    let planes: Vec<&[u8]> = img.chunks_exact(plane).collect();
    let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(plane).collect();
    for r in 0..h {
        for col in 0..w {
            let (y, x) = (a * r as f64 + b * col as f64 + e, cc * r as f64 + d * col as f64 + f);
            let o = r * w + col;
            let Some((y, x)) = locate(y, hi, fill).zip(locate(x, wi, fill)) else {
                outs.iter_mut().for_each(|out_plane| out_plane[o] = cval);
                continue;
            };
            match cfg.interpolation {
                Interpolation::Nearest => {
                    let src = fold(floor(y + 0.5), hi, fill).zip(fold(floor(x + 0.5), wi, fill));
                    for (src_plane, out_plane) in planes.iter().zip(outs.iter_mut()) {
                        out_plane[o] = src.map_or(cval, |(sy, sx)| f32::from(src_plane[sy * w + sx]) * scale);
                    }
                }
                Interpolation::Bilinear => {
                    // Weighed in double precision and rounded once to f32, as scipy does: an
                    // f32 sum can land just below a whole value that the brightness step's
                    // cut to 8 bits then takes one level lower.
                    let (y0, x0) = (floor(y), floor(x));
                    let (fy, fx) = (y - y0 as f64, x - x0 as f64);
                    let (gy, gx) = (1.0 - fy, 1.0 - fx);
                    let weights = [gy * gx, gy * fx, fy * gx, fy * fx];
                    let finish = |v: f64| (v * f64::from(scale)) as f32;
                    if y0 >= 0 && x0 >= 0 && y0 + 1 < hi && x0 + 1 < wi {
                        // All four taps inside: the common case, without fill-mode lookups.
                        let base = y0 as usize * w + x0 as usize;
                        for (src, out_plane) in planes.iter().zip(outs.iter_mut()) {
                            let (top, bottom) = (&src[base..base + 2], &src[base + w..base + w + 2]);
                            out_plane[o] = finish(
                                f64::from(top[0]) * weights[0]
                                    + f64::from(top[1]) * weights[1]
                                    + f64::from(bottom[0]) * weights[2]
                                    + f64::from(bottom[1]) * weights[3],
                            );
                        }
                        continue;
                    }
                    let rows = [fold(y0, hi, fill), fold(y0 + 1, hi, fill)];
                    let cols = [fold(x0, wi, fill), fold(x0 + 1, wi, fill)];
                    for (src, out_plane) in planes.iter().zip(outs.iter_mut()) {
                        let px = |ry: Option<usize>, rx: Option<usize>| {
                            ry.zip(rx).map_or(cfg.cval, |(sy, sx)| f64::from(src[sy * w + sx]))
                        };
                        let taps =
                            [px(rows[0], cols[0]), px(rows[0], cols[1]), px(rows[1], cols[0]), px(rows[1], cols[1])];
                        out_plane[o] = finish(taps.iter().zip(weights).map(|(t, w)| t * w).sum());
                    }
                }
            }
        }
    }
    if let Some(shift) = p.channel_shift {
        // Keras clips to the transformed image's own range.
        let (lo, hi) = out.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        out.iter_mut().for_each(|v| *v = (*v + shift as f32).clamp(lo, hi));
    }
    if let Some(factor) = p.brightness {
        // PIL's ImageEnhance.Brightness on the 8-bit image Keras makes (values cut, not rounded).
        let factor = factor as f32;
        out.iter_mut().for_each(|v| *v = (v.trunc() * factor).clamp(0.0, 255.0).trunc());
    }
    if late {
        out.iter_mut().for_each(|v| *v /= 255.0);
    }
}

/// A training batch: `pixels` holds the images `indices` (CHW bytes, `shape` each, in that
/// order), augmented with draws from (seed, epoch, image index), in parallel across the batch.
pub fn batch(
    cfg: &AugmentConfig,
    pixels: &[u8],
    shape: [usize; 3],
    indices: &[usize],
    seed: u64,
    epoch: usize,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut out = vec![0.0; indices.len() * n];
    assert_eq!(pixels.len(), out.len(), "one image of {shape:?} per index");
    out.par_chunks_mut(n).zip(pixels.par_chunks(n)).zip(indices).for_each(|((out, img), &i)| {
        let mut rng = seed::rng(seed, Stream::Augment, &[epoch as u64, i as u64]);
        let params = cfg.draw(shape[1], shape[2], &mut rng);
        apply(cfg, &params, img, shape, out);
    });
    out
}

impl Serialize for ShiftRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ShiftRange::Uniform(v) => s.serialize_f64(*v),
            ShiftRange::Pixels(n) => s.serialize_u64(*n),
            ShiftRange::Choice(values) => values.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ShiftRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ShiftRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a number (0.2 = 20% of the size, 10.0 = 10 pixels), an integer of pixels, or a list of numbers",
                )
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ShiftRange, E> {
                Ok(ShiftRange::Uniform(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ShiftRange, E> {
                u64::try_from(v).map(ShiftRange::Pixels).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ShiftRange, E> {
                Ok(ShiftRange::Pixels(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ShiftRange, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<f64>()? {
                    values.push(v);
                }
                Ok(ShiftRange::Choice(values))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ZoomRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ZoomRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ZoomRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number z for [1 - z, 1 + z], or [lower, upper]")
            }
            fn visit_f64<E: de::Error>(self, z: f64) -> Result<ZoomRange, E> {
                Ok(ZoomRange([1.0 - z, 1.0 + z]))
            }
            fn visit_i64<E: de::Error>(self, z: i64) -> Result<ZoomRange, E> {
                self.visit_f64(z as f64)
            }
            fn visit_u64<E: de::Error>(self, z: u64) -> Result<ZoomRange, E> {
                self.visit_f64(z as f64)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ZoomRange, A::Error> {
                let lo = seq.next_element::<f64>()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let hi = seq.next_element::<f64>()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(ZoomRange([lo, hi]))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for ShiftRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ShiftRange".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A float (below 1: fraction of the size; otherwise pixels), an integer number of pixels, or a list of values.",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "array", "items": { "type": "number" }, "minItems": 1 }
            ]
        })
    }
}

impl schemars::JsonSchema for ZoomRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ZoomRange".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "z for [1 - z, 1 + z], or [lower, upper].",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "array", "items": { "type": "number", "exclusiveMinimum": 0 }, "minItems": 2, "maxItems": 2 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Params {
        Params { zx: 1.0, zy: 1.0, ..Params::default() }
    }

    /// The input point that output pixel `(row, col)` is sampled from.
    fn source(m: &Affine, row: usize, col: usize) -> (f64, f64) {
        let (r, c) = (row as f64, col as f64);
        (m[0][0] * r + m[0][1] * c + m[0][2], m[1][0] * r + m[1][1] * c + m[1][2])
    }

    /// An output pixel `(row, col)` and the input point it must sample.
    type Case = ((usize, usize), (f64, f64));

    fn assert_maps(p: Params, (h, w): (usize, usize), cases: &[Case]) {
        let m = p.matrix(h, w);
        for &((row, col), (want_r, want_c)) in cases {
            let (r, c) = source(&m, row, col);
            assert!(
                (r - want_r).abs() < 1e-9 && (c - want_c).abs() < 1e-9,
                "{p:?}: output ({row}, {col}) samples ({r}, {c}), want ({want_r}, {want_c})"
            );
        }
    }

    #[test]
    fn default_params_give_the_identity_matrix() {
        let m = identity().matrix(5, 7);
        let want = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        for i in 0..2 {
            for j in 0..3 {
                assert!((m[i][j] - want[i][j]).abs() < 1e-12, "m[{i}][{j}] = {}", m[i][j]);
            }
        }
        assert!(identity().is_identity());
        assert!(!Params { theta: 1.0, ..identity() }.is_identity());
        assert!(!Params { flip_vertical: true, ..identity() }.is_identity());
        assert!(!Params { brightness: Some(1.0), ..identity() }.is_identity());
    }

    #[test]
    fn a_90_degree_rotation_samples_each_corner_from_the_next_one() {
        // Output (r, c) samples input (c, n-1-r): Keras turns the picture anticlockwise.
        let p = Params { theta: 90.0, ..identity() };
        assert_maps(
            p,
            (5, 5),
            &[((0, 0), (0.0, 4.0)), ((0, 4), (4.0, 4.0)), ((4, 4), (4.0, 0.0)), ((2, 2), (2.0, 2.0))],
        );
        // 180° about the centre of a non-square grid swaps opposite corners exactly.
        let p = Params { theta: 180.0, ..identity() };
        assert_maps(p, (3, 6), &[((0, 0), (2.0, 5.0)), ((2, 5), (0.0, 0.0)), ((0, 5), (2.0, 0.0))]);
    }

    #[test]
    fn flips_mirror_the_columns_or_rows() {
        let (h, w) = (4, 6);
        let flip_h = Params { flip_horizontal: true, ..identity() };
        assert_maps(flip_h, (h, w), &[((0, 0), (0.0, 5.0)), ((3, 1), (3.0, 4.0)), ((2, 5), (2.0, 0.0))]);
        let flip_v = Params { flip_vertical: true, ..identity() };
        assert_maps(flip_v, (h, w), &[((0, 0), (3.0, 0.0)), ((3, 1), (0.0, 1.0))]);
        let both = Params { flip_horizontal: true, flip_vertical: true, ..identity() };
        assert_maps(both, (h, w), &[((0, 0), (3.0, 5.0)), ((1, 2), (2.0, 3.0))]);
    }

    #[test]
    fn a_flip_acts_on_the_output_after_the_rotation() {
        // Rotating 90° then mirroring left-right mirrors about the other diagonal: output
        // (r, c) samples (n-1-c, n-1-r).
        let p = Params { theta: 90.0, flip_horizontal: true, ..identity() };
        assert_maps(p, (5, 5), &[((0, 3), (1.0, 4.0)), ((1, 4), (0.0, 3.0)), ((4, 0), (4.0, 0.0))]);
    }

    #[test]
    fn zoom_scales_distances_from_the_centre() {
        // Zoom 2 on a 9x9 grid: the centre stays, a corner samples twice as far out.
        let p = Params { zx: 2.0, zy: 2.0, ..identity() };
        assert_maps(p, (9, 9), &[((4, 4), (4.0, 4.0)), ((0, 0), (-4.0, -4.0)), ((4, 6), (4.0, 8.0))]);
        // Zoom 0.5 along y only, on a 5x8 grid (centre (2, 3.5)): zooms in on the rows.
        let p = Params { zy: 0.5, ..identity() };
        assert_maps(p, (5, 8), &[((0, 0), (1.0, 0.0)), ((4, 7), (3.0, 7.0))]);
        // And along x only: the columns.
        let p = Params { zx: 0.5, ..identity() };
        assert_maps(p, (5, 8), &[((0, 0), (0.0, 1.75)), ((4, 7), (4.0, 5.25))]);
    }

    /// Keras' formula by hand: M = R · T · Sh · Z in (x, y), centred at c: input = M·(out - c) + c,
    /// with the translation applied in the rotated frame; then read in (row, col) = (y, x).
    #[test]
    #[allow(clippy::needless_range_loop)] // matrix entries by row and column, as the formula writes them
    fn the_matrix_is_keras_rotation_shift_shear_zoom_about_the_centre() {
        let (h, w) = (9usize, 13usize);
        let (cx, cy) = (6.0, 4.0);
        let p = Params { theta: 30.0, tx: 2.0, ty: -3.0, shear: 10.0, zx: 0.9, zy: 1.2, ..identity() };
        let m = p.matrix(h, w);
        let (t, s) = (30f64.to_radians(), 10f64.to_radians());
        // R·Sh·Z (linear part) and R·(tx, ty) (translation), both in (x, y).
        let a = [[t.cos(), -t.sin()], [t.sin(), t.cos()]];
        let sh = [[1.0, -s.sin()], [0.0, s.cos()]];
        let lin = |i: usize, j: usize| (0..2).map(|k| a[i][k] * sh[k][j]).sum::<f64>() * [0.9, 1.2][j];
        let shift = [a[0][0] * 2.0 + a[0][1] * -3.0, a[1][0] * 2.0 + a[1][1] * -3.0];
        // (row, col) index i is (x, y) index 1 - i.
        for i in 0..2 {
            let xy = 1 - i;
            for j in 0..2 {
                let want = lin(xy, 1 - j);
                assert!((m[i][j] - want).abs() < 1e-12, "m[{i}][{j}] = {} want {want}", m[i][j]);
            }
            let centre = [cx, cy];
            let offset = centre[xy] + shift[xy] - (lin(xy, 0) * cx + lin(xy, 1) * cy);
            assert!((m[i][2] - offset).abs() < 1e-12, "offset {i}: {} want {offset}", m[i][2]);
        }
        // Each parameter alone.
        let only = |p: Params| p.matrix(h, w);
        let z = only(Params { zx: 2.0, ..identity() });
        assert_eq!((z[1][1], z[1][2], z[0][0]), (2.0, cx - 2.0 * cx, 1.0), "zx scales the columns");
        let sft = only(Params { tx: 3.0, ty: 1.0, ..identity() });
        assert_eq!((sft[0][2], sft[1][2]), (1.0, 3.0), "tx moves the columns, ty the rows");
        // Keras shears along x: the column read moves with the row, the row read shrinks.
        let shr = only(Params { shear: 20.0, ..identity() });
        assert!(
            (shr[1][0] + 20f64.to_radians().sin()).abs() < 1e-12
                && (shr[0][0] - 20f64.to_radians().cos()).abs() < 1e-12
                && shr[0][1] == 0.0
        );
    }

    #[test]
    fn fill_modes_fold_far_outside_indices_back_inside() {
        // Four pixels abcd; index -1 is left of a, 4 right of d.
        let n = 4;
        let folded = |mode| (-6..10).map(|i| fold(i, n, mode)).collect::<Vec<_>>();
        let some = |v: &[usize]| v.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert_eq!(folded(FillMode::Nearest), some(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3]));
        assert_eq!(folded(FillMode::Wrap), some(&[2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1]));
        // dcba|abcd|dcba|abcd
        assert_eq!(folded(FillMode::Reflect), some(&[2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1]));
        let constant = folded(FillMode::Constant);
        assert_eq!(constant[6..10], some(&[0, 1, 2, 3])[..]);
        assert!(constant[..6].iter().chain(&constant[10..]).all(Option::is_none));
    }

    #[test]
    fn points_outside_are_brought_inside_as_scipy_does() {
        // Four pixels at 0..=3. Values from scipy.ndimage.affine_transform 1.17 with order 1.
        let at = |v: f64, mode| locate(v, 4, mode);
        assert_eq!(at(-1e-12, FillMode::Constant), None, "constant: anything past a pixel centre");
        assert_eq!(at(3.0 + 1e-12, FillMode::Constant), None);
        assert_eq!(at(3.0, FillMode::Constant), Some(3.0));
        assert_eq!(at(-2.5, FillMode::Nearest), Some(0.0));
        // wrap has period n-1 = 3: -0.5 reads between c and d, 4.0 reads b, -3 reads d.
        assert_eq!(at(-0.5, FillMode::Wrap), Some(2.5));
        assert_eq!(at(4.0, FillMode::Wrap), Some(1.0));
        assert_eq!(at(-3.0, FillMode::Wrap), Some(3.0));
        // reflect mirrors about -0.5 and 3.5 with period 8.
        assert_eq!(at(-1.5, FillMode::Reflect), Some(0.5));
        assert_eq!(at(5.5, FillMode::Reflect), Some(1.5));
        assert_eq!(at(-9.5, FillMode::Reflect), Some(0.5));
        assert_eq!(locate(7.0, 1, FillMode::Wrap), Some(0.0), "one pixel: always that pixel");
    }

    #[test]
    fn floor_rounds_towards_minus_infinity() {
        let cases = [(2.7, 2), (2.0, 2), (0.0, 0), (-0.0, 0), (-0.5, -1), (-1.0, -1), (-1.5, -2)];
        for (v, want) in cases {
            assert_eq!(floor(v), want, "floor({v})");
        }
    }
}
