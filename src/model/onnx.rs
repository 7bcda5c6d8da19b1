//! ONNX export: a trained model as an ONNX `ModelProto` (IR version 8, opset 17) that
//! onnxruntime and other ONNX tools run. Each layer kind writes its own nodes
//! ([`Layer::onnx`](super::Layer::onnx), in its file); this module gives them a [`Graph`] to
//! write into and assembles the model: the input, the weights as initializers, the output and
//! the metadata. It works from the checked plan and the named weights of a weights file, so it
//! needs no dfdx.
//!
//! The contract of an exported model:
//!
//! - one input, [`INPUT`] (`image`): float32 `[N, C, H, W]` (NCHW, `N` symbolic), pixels scaled
//!   to [0, 1] (8-bit value / 255) as in training, at the run's image size and colour mode;
//! - one output, [`OUTPUT`] (`probabilities`): float32 `[N, classes]`, each row summing to 1,
//!   classes in the run's order. The network's own output activation is part of the graph; a
//!   one-unit sigmoid head `p` becomes the two columns `[1 - p, p]`, as `runner predict`
//!   reports them.
//!
//! Layer activations flow as in training: images NCHW, so `flatten` is ONNX's `Flatten` on
//! NCHW (channel-major, the order the dense kernel after it was trained on).

use std::collections::HashSet;

use super::layers::Activation;
use super::{Layer, ModelPlan, Shape};
use crate::results::protobuf::Message;
use crate::results::safetensors::Named;

/// The ONNX IR version written.
pub const IR_VERSION: u64 = 8;
/// The version of the default (`ai.onnx`) operator set the nodes use.
pub const OPSET: u64 = 17;
/// Name of the model's input.
pub const INPUT: &str = "image";
/// Name of the model's output.
pub const OUTPUT: &str = "probabilities";
/// Name of the symbolic batch dimension.
pub const BATCH: &str = "N";

/// `TensorProto.DataType.FLOAT`.
const FLOAT: u64 = 1;

/// A node attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
}

impl Attr {
    /// `INTS` from sizes.
    pub fn ints(values: &[usize]) -> Attr {
        Attr::Ints(values.iter().map(|&v| v as i64).collect())
    }
}

/// One node: an operator of the default domain with its inputs, one output and attributes.
#[derive(Clone, Debug)]
struct Node {
    op: &'static str,
    name: String,
    inputs: Vec<String>,
    output: String,
    attributes: Vec<(&'static str, Attr)>,
}

/// A constant tensor of the graph (a weight or a scalar).
#[derive(Clone, Debug)]
struct Initializer {
    name: String,
    dims: Vec<usize>,
    values: Vec<f32>,
}

/// The graph being written: nodes in order, and the initializers they read.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    initializers: Vec<Initializer>,
    names: HashSet<String>,
}

impl Graph {
    /// Adds the node `op` on `inputs` and returns the name of its output. The node and its
    /// output are named `<scope>/<op>` (a layer's name as scope: `conv2d_1/Conv`), numbered
    /// when a scope uses an operator twice.
    pub fn node(
        &mut self,
        scope: &str,
        op: &'static str,
        inputs: &[&str],
        attributes: Vec<(&'static str, Attr)>,
    ) -> String {
        let name = self.unique(&format!("{scope}/{op}"));
        let inputs = inputs.iter().map(|s| s.to_string()).collect();
        self.nodes.push(Node { op, name: name.clone(), inputs, output: name.clone(), attributes });
        name
    }

    /// Adds a weight (`conv2d/kernel`, its shape and values) as an initializer under its own
    /// name, and returns that name.
    pub fn weight(&mut self, (name, dims, values): &Named) -> String {
        if self.names.insert(name.clone()) {
            self.initializers.push(Initializer { name: name.clone(), dims: dims.clone(), values: values.clone() });
        }
        name.clone()
    }

    /// A scalar constant `const/<name>`, added once however often it is asked for.
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        let name = format!("const/{name}");
        if self.names.insert(name.clone()) {
            self.initializers.push(Initializer { name: name.clone(), dims: Vec::new(), values: vec![value] });
        }
        name
    }

    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// Gives the value `from` the name `to` (the graph output's fixed name).
    fn rename(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            if node.output == from {
                node.output = to.to_string();
            }
            node.inputs.iter_mut().filter(|i| *i == from).for_each(|i| *i = to.to_string());
        }
    }

    /// The operators of the nodes, in order (for tests and messages).
    pub fn ops(&self) -> Vec<&'static str> {
        self.nodes.iter().map(|n| n.op).collect()
    }
}

/// What a layer's [`Layer::onnx`] knows besides its input value: where it sits and its weights.
pub struct At<'a> {
    /// Keras-style unique name (`conv2d_1`): the scope of its nodes.
    pub name: &'a str,
    /// Shape it receives (per image).
    pub input: Shape,
    /// Shape it produces.
    pub output: Shape,
    /// Its weights, in [`Layer::params`] order (`kernel`, `bias`; `gamma`, `beta`,
    /// `moving_mean`, `moving_variance`), each checked against the plan's shape.
    pub weights: &'a [&'a Named],
}

/// Padding before and after along one axis for ONNX's explicit `pads`: `before` as the layer
/// computed it (TensorFlow's "same" split), and what the windows need after the last element
/// (0 for "valid"; "same" puts the odd one at the end).
pub fn pads(input: usize, output: usize, stride: usize, window: usize, before: usize) -> [usize; 2] {
    let after = ((output.max(1) - 1) * stride + window).saturating_sub(input + before);
    [before, after]
}

/// The `kernel_shape`, `strides` and explicit `pads` of a pooling (never `auto_pad`).
pub fn pool_attributes(p: &crate::ops::PoolGeom) -> Vec<(&'static str, Attr)> {
    let [top, bottom] = pads(p.h, p.oh, p.sh, p.ph, p.pad_top);
    let [left, right] = pads(p.w, p.ow, p.sw, p.pw, p.pad_left);
    vec![
        ("kernel_shape", Attr::ints(&[p.ph, p.pw])),
        ("strides", Attr::ints(&[p.sh, p.sw])),
        ("pads", Attr::ints(&[top, left, bottom, right])),
    ]
}

/// What the model says about itself, beyond its layers.
#[derive(Clone, Debug, Default)]
pub struct About {
    /// The graph's name (the experiment's).
    pub name: String,
    /// `producer_version`: runner's version.
    pub producer_version: String,
    /// The model's `doc_string`.
    pub doc: String,
    /// The input's `doc_string`.
    pub input_doc: String,
    /// The output's `doc_string`.
    pub output_doc: String,
    /// `metadata_props`, in order.
    pub metadata: Vec<(String, String)>,
}

/// The layers' nodes for `plan` with `weights`, ending in the value [`OUTPUT`]; returns the
/// graph and the number of output columns. A layer that cannot be written is named with its
/// index, type and the reason.
pub fn graph(plan: &ModelPlan, weights: &[Named]) -> Result<(Graph, usize), String> {
    if !matches!(plan.input, Shape::Image { .. }) {
        return Err(format!("the model's input {} is not an image", plan.input));
    }
    let mut g = Graph::default();
    g.names.insert(INPUT.to_string());
    g.names.insert(OUTPUT.to_string());
    let mut x = INPUT.to_string();
    for (index, layer) in plan.layers.iter().enumerate() {
        let fail = |why: String| {
            format!("layer {index} (`{}`, {}) cannot be exported to ONNX: {why}", layer.config.kind(), layer.name)
        };
        let mut own = Vec::with_capacity(layer.params.len());
        for spec in &layer.params {
            let name = format!("{}/{}", layer.name, spec.name);
            let w = weights
                .iter()
                .find(|(n, ..)| *n == name)
                .ok_or_else(|| fail(format!("the weights have no tensor `{name}`")))?;
            if w.1 != spec.dims || w.2.len() != spec.dims.iter().product::<usize>() {
                return Err(fail(format!("`{name}` has shape {:?}, but the layer needs {:?}", w.1, spec.dims)));
            }
            own.push(w);
        }
        let at = At { name: &layer.name, input: layer.input, output: layer.output, weights: &own };
        x = layer.config.onnx(&mut g, &x, &at).map_err(fail)?;
    }
    let last = plan.layers.last().map(|l| l.config.activation());
    let columns = match (plan.output(), last) {
        // One sigmoid unit p: the classes' probabilities are [1 - p, p].
        (Shape::Flat(1), Some(Activation::Sigmoid)) => {
            let one = g.scalar("one", 1.0);
            let q = g.node("head", "Sub", &[&one, &x], vec![]);
            x = g.node("head", "Concat", &[&q, &x], vec![("axis", Attr::Int(1))]);
            2
        }
        (Shape::Flat(n), _) => n,
        (image, _) => return Err(format!("the model's output {image} is not a vector of class scores")),
    };
    match x == INPUT {
        true => {
            g.node("output", "Identity", &[&x], vec![]);
            let last = g.nodes.last().expect("just added").output.clone();
            g.rename(&last, OUTPUT);
        }
        false => g.rename(&x, OUTPUT),
    }
    Ok((g, columns))
}

/// The ONNX file of `plan` with `weights` (from a weights file: `<layer>/<weight>` names).
pub fn model(plan: &ModelPlan, weights: &[Named], about: &About) -> Result<Vec<u8>, String> {
    let (g, columns) = graph(plan, weights)?;
    let Shape::Image { c, h, w } = plan.input else { unreachable!("graph checked the input") };

    let mut graph = Message::new();
    for node in &g.nodes {
        graph.message(1, &encode_node(node));
    }
    graph.string(2, &about.name);
    for init in &g.initializers {
        graph.message(5, &encode_tensor(init));
    }
    graph.string(10, &about.doc);
    let batch = Dim::Param(BATCH);
    let input_dims = [batch, Dim::Value(c), Dim::Value(h), Dim::Value(w)];
    graph.message(11, &value_info(INPUT, &input_dims, &about.input_doc));
    graph.message(12, &value_info(OUTPUT, &[batch, Dim::Value(columns)], &about.output_doc));

    let mut opset = Message::new();
    opset.string(1, "").varint(2, OPSET);
    let mut model = Message::new();
    model.varint(1, IR_VERSION).string(2, "runner").string(3, &about.producer_version).string(6, &about.doc);
    model.message(7, &graph).message(8, &opset);
    for (key, value) in &about.metadata {
        let mut entry = Message::new();
        entry.string(1, key).string(2, value);
        model.message(14, &entry);
    }
    Ok(model.into_bytes())
}

/// One dimension of a value's shape.
#[derive(Clone, Copy)]
enum Dim {
    Value(usize),
    Param(&'static str),
}

/// `ValueInfoProto` of a float tensor.
fn value_info(name: &str, dims: &[Dim], doc: &str) -> Message {
    let mut shape = Message::new();
    for d in dims {
        let mut dim = Message::new();
        match d {
            Dim::Value(v) => dim.int64(1, *v as i64),
            Dim::Param(p) => dim.string(2, p),
        };
        shape.message(1, &dim);
    }
    let mut tensor = Message::new();
    tensor.varint(1, FLOAT).message(2, &shape);
    let mut ty = Message::new();
    ty.message(1, &tensor);
    let mut info = Message::new();
    info.string(1, name).message(2, &ty).string(3, doc);
    info
}

/// `NodeProto`.
fn encode_node(node: &Node) -> Message {
    let mut m = Message::new();
    node.inputs.iter().for_each(|i| {
        m.string(1, i);
    });
    m.string(2, &node.output).string(3, &node.name).string(4, node.op);
    for (name, value) in &node.attributes {
        let mut a = Message::new();
        a.string(1, name);
        // AttributeProto: f = 2, i = 3, ints = 8; type = 20 (FLOAT 1, INT 2, INTS 7).
        match value {
            Attr::Float(f) => a.float(2, *f).varint(20, 1),
            Attr::Int(i) => a.int64(3, *i).varint(20, 2),
            Attr::Ints(v) => a.packed_int64s(8, v).varint(20, 7),
        };
        m.message(5, &a);
    }
    m
}

/// `TensorProto` of float32 values, stored as little-endian `raw_data`.
fn encode_tensor(t: &Initializer) -> Message {
    let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
    let raw: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut m = Message::new();
    if !dims.is_empty() {
        m.packed_int64s(1, &dims);
    }
    m.varint(2, FLOAT).string(8, &t.name).bytes(9, &raw);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{plan, LayerConfig};

    fn layers(toml: &str) -> Vec<LayerConfig> {
        #[derive(serde::Deserialize)]
        struct Model {
            layers: Vec<LayerConfig>,
        }
        toml::from_str::<Model>(toml).unwrap().layers
    }

    /// Every weight of `plan`, filled with zeros.
    fn zeros(plan: &ModelPlan) -> Vec<Named> {
        plan.layers
            .iter()
            .flat_map(|l| {
                l.params
                    .iter()
                    .map(|p| (format!("{}/{}", l.name, p.name), p.dims.clone(), vec![0.0; p.dims.iter().product()]))
            })
            .collect()
    }

    const HEAD: &str = r#"
        [[layers]]
        type = "conv2d"
        filters = 2
        kernel_size = 3
        padding = "same"
        strides = 2
        activation = "gelu"
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "dense"
        units = 1
        activation = "sigmoid"
    "#;

    #[test]
    fn pads_are_explicit_with_the_odd_one_after() {
        // "same", stride 2, window 3 on 8: 4 outputs need 9 pixels, the extra one at the end.
        assert_eq!(pads(8, 4, 2, 3, 0), [0, 1]);
        // "same", window 4 on 9, stride 2: 5 outputs cover 12, 3 padded, 1 before and 2 after.
        assert_eq!(pads(9, 5, 2, 4, 1), [1, 2]);
        // "valid" leaves pixels over at the end unused, as ONNX's floor does.
        assert_eq!(pads(10, 4, 2, 3, 0), [0, 0]);
    }

    #[test]
    fn a_sigmoid_head_gives_both_classes_and_the_output_is_named() {
        let p = plan(&layers(HEAD), Shape::Image { c: 1, h: 8, w: 8 }).unwrap();
        let (g, columns) = graph(&p, &zeros(&p)).unwrap();
        assert_eq!(columns, 2);
        assert_eq!(g.ops(), ["Conv", "Div", "Erf", "Add", "Mul", "Mul", "Flatten", "Gemm", "Sigmoid", "Sub", "Concat"]);
        assert_eq!(g.nodes.last().unwrap().output, OUTPUT);
        assert_eq!(g.nodes[0].attributes[3], ("pads", Attr::Ints(vec![0, 0, 1, 1])));
        let bytes = model(&p, &zeros(&p), &About::default()).unwrap();
        assert!(bytes.windows(OUTPUT.len()).any(|w| w == OUTPUT.as_bytes()));
    }

    #[test]
    fn a_missing_weight_names_the_layer() {
        let p = plan(&layers(HEAD), Shape::Image { c: 1, h: 8, w: 8 }).unwrap();
        let mut weights = zeros(&p);
        weights.retain(|(n, ..)| n != "dense/bias");
        let err = graph(&p, &weights).unwrap_err();
        assert_eq!(err, "layer 2 (`dense`, dense) cannot be exported to ONNX: the weights have no tensor `dense/bias`");
        let mut weights = zeros(&p);
        weights[0].1 = vec![2, 1, 3, 4];
        let err = graph(&p, &weights).unwrap_err();
        assert!(
            err.starts_with("layer 0 (`conv2d`, conv2d) cannot be exported to ONNX: `conv2d/kernel` has shape"),
            "{err}"
        );
    }
}
