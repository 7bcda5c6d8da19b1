//! The weights a model has, by name and shape, and how a set of named tensors (a weights file
//! for a warm start) differs from them. Names are `<layer>/<weight>`, the layer's Keras-style
//! name and the weight's Keras name (`conv2d_1/kernel`, `batch_normalization/moving_mean`);
//! the same names are used in `weights.safetensors`, checkpoints and exported models, so they
//! must not change.

use std::fmt;

use super::ModelPlan;

/// A weight of the model: its name and shape (row-major).
pub type Expected = (String, Vec<usize>);

/// Every weight of `plan`, in network order.
pub fn expected(plan: &ModelPlan) -> Vec<Expected> {
    let per_layer = plan.layers.iter().map(|l| l.params.iter().map(move |p| (format!("{}/{}", l.name, p.name), p)));
    per_layer.flatten().map(|(name, p)| (name, p.dims.clone())).collect()
}

/// One way a set of tensors does not fit a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The model has this weight; the tensors do not.
    Missing {
        /// The weight's name.
        name: String,
        /// Its shape in the model.
        expected: Vec<usize>,
    },
    /// The tensors have this one; the model has no weight of that name.
    Extra {
        /// The tensor's name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Both have it, in different shapes.
    Shape {
        /// The weight's name.
        name: String,
        /// Its shape in the model.
        expected: Vec<usize>,
        /// Its shape in the tensors.
        found: Vec<usize>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { name, expected } => write!(f, "missing `{name}` {expected:?}: the model needs it"),
            Mismatch::Extra { name, shape } => write!(f, "extra `{name}` {shape:?}: the model has no such weight"),
            Mismatch::Shape { name, expected, found } => {
                write!(f, "wrong shape `{name}`: {found:?} in the file, the model needs {expected:?}")
            }
        }
    }
}

/// Every difference between the model's weights and `found` (name, shape): first the model's
/// weights in network order (missing or misshapen), then the extra tensors in the order given.
pub fn mismatches(plan: &ModelPlan, found: &[(&str, &[usize])]) -> Vec<Mismatch> {
    let expected = expected(plan);
    let mut out = Vec::new();
    for (name, dims) in &expected {
        match found.iter().find(|(n, _)| n == name) {
            None => out.push(Mismatch::Missing { name: name.clone(), expected: dims.clone() }),
            Some((_, shape)) if shape != dims => {
                out.push(Mismatch::Shape { name: name.clone(), expected: dims.clone(), found: shape.to_vec() })
            }
            Some(_) => {}
        }
    }
    for (name, shape) in found {
        if !expected.iter().any(|(n, _)| n == name) {
            out.push(Mismatch::Extra { name: name.to_string(), shape: shape.to_vec() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::conv2d::Conv2dConfig;
    use crate::model::{plan, LayerConfig, Shape};

    fn model() -> ModelPlan {
        let layers = [LayerConfig::Conv2d(Conv2dConfig::new(4, [3, 3]))];
        plan(&layers, Shape::Image { c: 1, h: 8, w: 8 }).unwrap()
    }

    #[test]
    fn names_follow_the_layers() {
        assert_eq!(expected(&model()), [("conv2d/kernel".into(), vec![4, 1, 3, 3]), ("conv2d/bias".into(), vec![4])]);
    }

    #[test]
    fn every_kind_of_mismatch_is_found_together() {
        let found: [(&str, &[usize]); 2] = [("conv2d/kernel", &[4, 3, 3, 1]), ("dense/bias", &[10])];
        assert_eq!(
            mismatches(&model(), &found),
            [
                Mismatch::Shape { name: "conv2d/kernel".into(), expected: vec![4, 1, 3, 3], found: vec![4, 3, 3, 1] },
                Mismatch::Missing { name: "conv2d/bias".into(), expected: vec![4] },
                Mismatch::Extra { name: "dense/bias".into(), shape: vec![10] },
            ]
        );
        let exact: [(&str, &[usize]); 2] = [("conv2d/bias", &[4]), ("conv2d/kernel", &[4, 1, 3, 3])];
        assert!(mismatches(&model(), &exact).is_empty(), "order does not matter, only names and shapes");
    }
}
