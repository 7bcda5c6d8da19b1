//! The config language: Keras vocabulary, every layer kind, defaults, strictness.

use runner::config::{self, Source};
use runner::model::{LayerConfig, Shape};

use crate::util::repo;

fn source(text: &str) -> Source {
    Source { path: "test.toml".into(), text: text.into() }
}

const HEAD: &str = r#"
[experiment]
name = "t"

[data]
path = "data/fashion_mnist"
image_size = [28, 28]
color_mode = "grayscale"

[train]
loss = "categorical_crossentropy"
epochs = 1
"#;

/// The layer table `body` parsed as the only layer of a config.
fn parse_layer(body: &str) -> Result<LayerConfig, String> {
    let text = format!("{HEAD}\n[[model.layers]]\n{body}\n");
    config::parse(&source(&text)).map(|c| c.model.layers[0].clone()).map_err(|e| e.to_string())
}

#[test]
fn the_tutorial_model_has_1_277_601_parameters() {
    let (config, source) = config::load(&repo().join("experiments/cats_vs_dogs.toml"), &Default::default()).unwrap();
    let plan = config::validate(config, source).unwrap();
    assert_eq!(plan.model.param_count(), 1_277_601);
    assert_eq!(plan.model.input, Shape::Image { c: 3, h: 128, w: 128 });
    let shapes: Vec<String> = plan.model.layers.iter().map(|l| l.output.to_string()).collect();
    assert_eq!(
        shapes,
        [
            "(None, 126, 126, 16)",
            "(None, 63, 63, 16)",
            "(None, 61, 61, 32)",
            "(None, 30, 30, 32)",
            "(None, 28, 28, 64)",
            "(None, 14, 14, 64)",
            "(None, 12, 12, 128)",
            "(None, 6, 6, 128)",
            "(None, 4608)",
            "(None, 256)",
            "(None, 1)",
        ]
    );
}

#[test]
fn the_baseline_config_is_valid() {
    let (config, source) = config::load(&repo().join("experiments/baseline.toml"), &Default::default()).unwrap();
    let plan = config::validate(config, source).unwrap();
    assert_eq!(plan.model.output(), Shape::Flat(10));
}

#[test]
fn every_layer_kind_parses_from_a_minimal_table_and_rejects_unknown_keys() {
    let minimal = |kind: &str| match kind {
        "conv2d" => "type = \"conv2d\"\nfilters = 4\nkernel_size = 3",
        "max_pooling2d" => "type = \"max_pooling2d\"",
        "flatten" => "type = \"flatten\"",
        "dense" => "type = \"dense\"\nunits = 3",
        "activation" => "type = \"activation\"\nactivation = \"relu\"",
        "average_pooling2d" => "type = \"average_pooling2d\"",
        "global_average_pooling2d" => "type = \"global_average_pooling2d\"",
        "dropout" => "type = \"dropout\"\nrate = 0.5",
        "batch_normalization" => "type = \"batch_normalization\"",
        "leaky_relu" => "type = \"leaky_relu\"",
        other => panic!("add a minimal example for the new layer kind `{other}`"),
    };
    for kind in LayerConfig::KINDS {
        let layer = parse_layer(minimal(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(layer.kind(), *kind);
        let err = parse_layer(&format!("{}\nbogus_key = 1", minimal(kind))).unwrap_err();
        assert!(err.contains("unknown field `bogus_key`"), "{kind}: {err}");
    }
}

#[test]
fn sizes_take_an_integer_or_a_pair_like_keras() {
    let a = parse_layer("type = \"conv2d\"\nfilters = 4\nkernel_size = 3\nstrides = 2").unwrap();
    let b = parse_layer("type = \"conv2d\"\nfilters = 4\nkernel_size = [3, 3]\nstrides = [2, 2]").unwrap();
    assert_eq!(a, b);
    for bad in ["kernel_size = 0", "kernel_size = [3, 3, 3]", "kernel_size = -1", "kernel_size = \"3\""] {
        let err = parse_layer(&format!("type = \"conv2d\"\nfilters = 4\n{bad}")).unwrap_err();
        assert!(err.contains("a positive integer or a list of two"), "{bad}: {err}");
    }
}

#[test]
fn defaults_follow_keras() {
    let text = format!("{HEAD}\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10\nactivation = \"softmax\"\n");
    let c = config::parse(&source(&text)).unwrap();
    assert_eq!(c.experiment.seed, 42);
    assert_eq!(c.train.batch_size, 32);
    assert_eq!(c.train.learning_rate, 0.001);
    assert_eq!(c.data.validation_split, 0.2);
    assert!(c.data.stratify);
    assert_eq!(c.output.dir, std::path::PathBuf::from("results"));
    let pool = parse_layer("type = \"max_pooling2d\"").unwrap();
    let LayerConfig::MaxPooling2d(pool) = pool else { panic!() };
    assert_eq!((pool.0.pool_size.0, pool.0.strides), ([2, 2], None));
}

fn validate_err(layers: &str) -> String {
    let text = format!("{HEAD}\n{layers}\n");
    config::validate(config::parse(&source(&text)).unwrap(), source(&text)).unwrap_err().to_string()
}

#[test]
fn dense_on_an_image_and_softmax_on_an_image_are_rejected_with_a_fix() {
    let err = validate_err("[[model.layers]]\ntype = \"dense\"\nunits = 10\nactivation = \"softmax\"");
    assert!(err.contains("layer 1 (`dense`)") && err.contains("add a `flatten` layer before it"), "{err}");
    assert!(err.contains("test.toml:14:1"), "{err}");
    let err = validate_err("[[model.layers]]\ntype = \"activation\"\nactivation = \"softmax\"");
    assert!(err.contains("softmax over an image") && err.contains("flatten first"), "{err}");
}

#[test]
fn the_last_layer_must_suit_the_loss() {
    let err = validate_err(
        "[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10\nactivation = \"relu\"",
    );
    assert!(
        err.contains(
            "categorical_crossentropy needs a last layer with one unit per class and activation = \"softmax\""
        ),
        "{err}"
    );
}

#[test]
fn syntax_errors_show_position_and_caret() {
    let err = config::parse(&source("[experiment]\nname = = \"x\"\n")).unwrap_err().to_string();
    assert!(err.starts_with("error: test.toml:2:"), "{err}");
    assert!(err.contains("2 | name = = \"x\""), "{err}");
}

#[test]
fn an_unknown_resize_mode_names_the_key_and_the_modes() {
    let text = HEAD.replace("color_mode = \"grayscale\"", "color_mode = \"grayscale\"\nresize = \"fit\"");
    let text = format!("{text}\n[[model.layers]]\ntype = \"flatten\"\n");
    let err = config::parse(&source(&text)).unwrap_err().to_string();
    assert!(err.contains("test.toml:9:10") && err.contains("resize = \"fit\""), "{err}");
    assert!(err.contains("`fit`") && err.contains("stretch") && err.contains("crop") && err.contains("pad"), "{err}");
}
