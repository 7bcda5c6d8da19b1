//! Shapes of the activations between layers, per sample (the batch axis is implicit).
//!
//! Tensors flowing through the network are always 2-D `(batch, features)`; an image shape
//! says how a row is laid out (channels, then rows, then columns: NCHW).

use std::fmt;

/// The shape of one sample's activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Channels, height, width.
    Image {
        /// Channels.
        c: usize,
        /// Height in pixels.
        h: usize,
        /// Width in pixels.
        w: usize,
    },
    /// A feature vector.
    Flat(usize),
}

impl Shape {
    /// Number of values per sample.
    pub fn len(self) -> usize {
        match self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    /// True for a shape holding no values.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Keras' notation, channels last, so that summaries read like `model.summary()`.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Image { c, h, w } => write!(f, "(None, {h}, {w}, {c})"),
            Shape::Flat(n) => write!(f, "(None, {n})"),
        }
    }
}
