//! Shape inference, the compiled network and the summary.

use dfdx::prelude::*;
use rand::SeedableRng;
use runner::config::{self, Source};
use runner::model::{self, summary, Network, Shape};

fn plan_of(layers: &str, input: Shape) -> Result<model::ModelPlan, model::LayerError> {
    #[derive(serde::Deserialize)]
    struct M {
        layers: Vec<model::LayerConfig>,
    }
    let m: M = toml::from_str(layers).unwrap();
    model::plan(&m.layers, input)
}

#[test]
fn network_output_matches_inferred_shapes_for_several_stacks() {
    let stacks = [
        "[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel_size = 3\npadding = \"same\"\nstrides = 2\nactivation = \"relu\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 4\nactivation = \"softmax\"",
        "[[layers]]\ntype = \"max_pooling2d\"\npool_size = 3\nstrides = 1\n[[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = [2, 3]\n[[layers]]\ntype = \"activation\"\nactivation = \"sigmoid\"\n[[layers]]\ntype = \"flatten\"",
    ];
    let dev = Cpu::default();
    for (i, stack) in stacks.iter().enumerate() {
        let input = Shape::Image { c: 2, h: 9, w: 7 };
        let plan = plan_of(stack, input).unwrap();
        let out = plan.output();
        let net = Network::new(plan, &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let y = net.forward(dev.tensor_from_vec(vec![0.5; 3 * input.len()], (3, input.len())), false);
        assert_eq!(*y.shape(), (3, out.len()), "stack {i}");
    }
}

#[test]
fn shape_errors_name_the_layer() {
    let err = plan_of(
        "[[layers]]\ntype = \"max_pooling2d\"\n[[layers]]\ntype = \"max_pooling2d\"\n[[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 3",
        Shape::Image { c: 1, h: 8, w: 8 },
    )
    .unwrap_err();
    assert_eq!(err.index, 2);
    assert!(err.message.contains("kernel 3x3 does not fit the input 2x2"), "{}", err.message);
    let err = plan_of(
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 3",
        Shape::Image { c: 1, h: 8, w: 8 },
    )
    .unwrap_err();
    assert!(err.message.contains("move it before the `flatten` layer"), "{}", err.message);
}

#[test]
fn initial_weights_are_glorot_uniform_and_seeded() {
    let plan = plan_of(
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 50",
        Shape::Image { c: 1, h: 10, w: 10 },
    )
    .unwrap();
    let dev = Cpu::default();
    let a = Network::new(plan.clone(), &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    let b = Network::new(plan.clone(), &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    let c = Network::new(plan, &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(6));
    let kernel = a.params[0].tensor.as_vec();
    assert_eq!(kernel, b.params[0].tensor.as_vec());
    assert_ne!(kernel, c.params[0].tensor.as_vec());
    let limit = (6.0f32 / 150.0).sqrt();
    assert!(kernel.iter().all(|v| v.abs() <= limit));
    assert!(kernel.iter().any(|v| v.abs() > limit * 0.9), "values should fill the range");
    assert!(a.params[1].tensor.as_vec().iter().all(|&v| v == 0.0), "biases start at zero");
    assert_eq!(a.params[0].name, "dense/kernel");
}

#[test]
fn summary_reads_like_keras() {
    let text = std::fs::read_to_string(crate::util::repo().join("experiments/cats_vs_dogs.toml")).unwrap();
    let source = Source { path: "cats_vs_dogs.toml".into(), text };
    let plan = config::validate(config::parse(&source).unwrap(), source).unwrap();
    let s = summary::render("cats_vs_dogs", &plan.model);
    assert!(s.starts_with("Model: \"cats_vs_dogs\""), "{s}");
    for line in [
        " conv2d (Conv2D)                   (None, 126, 126, 16)                 448",
        " max_pooling2d_3 (MaxPooling2D)    (None, 6, 6, 128)                      0",
        " dense (Dense)                     (None, 256)                    1,179,904",
        "Total params: 1,277,601",
    ] {
        assert!(s.lines().any(|l| l == line), "missing line {line:?} in\n{s}");
    }
}

#[test]
fn the_confusion_matrix_counts_true_against_predicted() {
    let m = runner::plots::confusion::matrix(3, &[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2]);
    assert_eq!(m, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 2]]);
}
