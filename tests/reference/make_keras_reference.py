"""Writes the Keras reference files that tests/it/keras_parity.rs compares runner with:

- keras/baseline_init.safetensors: experiments/baseline.toml's model as Keras initialises it
  (glorot_uniform kernels, zero biases; keras.utils.set_random_seed(0)), converted to runner's
  layout by keras_to_safetensors.py;
- keras/training.json: that model, and the tutorial CNN of experiments/cats_vs_dogs.toml (on
  46x46x3 inputs, the smallest its four blocks take, so the file stays small), trained 24 steps
  on fixed batches (no shuffle, no augmentation) with each optimizer: the learning rate and the
  loss of every step and a digest of the final weights (in runner's layout: per tensor the sum, the sum of squares
  and 16 values at fixed positions). The tutorial's initial weights and inputs come from
  splitmix64 (`unit` below), which the test computes the same way, rather than from a file;
- keras/layers.json: every layer kind's output on fixed inputs, in training and in inference;
- keras/losses.json, keras/metrics.json: each loss (with and without label smoothing) and each
  metric on fixed predictions.

Run from the repository root with TensorFlow and Keras installed (see README.md here):

    python tests/reference/make_keras_reference.py                  # every file
    python tests/reference/make_keras_reference.py --only layers    # one of them

Everything is seeded, and TensorFlow runs on one thread with deterministic kernels (with its
default threads its sums run in varying order, and two runs of the training part gave losses
2.4e-2 apart by step 23), so running it again rewrites the same files.
"""

import json
import os
import sys
import tomllib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN's fused kernels reorder sums between runs; the plain kernels give the same bits each time.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "keras"
sys.path.insert(0, str(HERE))
import keras_to_safetensors as conv  # noqa: E402

STEPS = 24
# Epochs and steps per epoch the runner side gives its schedules: 4 x 6 = STEPS.
EPOCHS, STEPS_PER_EPOCH = 4, 6
MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def unit(key, n):
    """n values in [0, 1), 24 bits each (exact in float32): splitmix64(key << 32 | i) >> 40."""
    return np.array([splitmix64((key << 32) | i) >> 40 for i in range(n)], dtype=np.float64) / 2.0**24


def glorot_like(index, dims):
    """Tensor `index` (network order) of the tutorial CNN: kernels uniform in Glorot's limit,
    biases zero, in runner's layout."""
    n = int(np.prod(dims))
    if len(dims) == 1:
        return np.zeros(dims, np.float32)
    if len(dims) == 4:
        f, c, kh, kw = dims
        fan_in, fan_out = c * kh * kw, f * kh * kw
    else:
        fan_in, fan_out = dims
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return (limit * (2.0 * unit(index + 1, n) - 1.0)).astype(np.float32).reshape(dims)


def experiment(path, image_size=None):
    with open(REPO / path, "rb") as f:
        config = tomllib.load(f)
    if image_size:
        config["data"]["image_size"] = image_size
    return config


def keras_layer(layer):
    """The Keras layer for one of runner's `[[model.layers]]` tables."""
    from keras import layers

    kind = layer["type"]
    pair = lambda v, d: d if v is None else ((v, v) if isinstance(v, int) else tuple(v))  # noqa: E731
    if kind == "conv2d":
        return layers.Conv2D(layer["filters"], pair(layer["kernel_size"], None),
                             strides=pair(layer.get("strides"), (1, 1)), padding=layer.get("padding", "valid"),
                             dilation_rate=pair(layer.get("dilation_rate"), (1, 1)),
                             activation=layer.get("activation", "linear"), use_bias=layer.get("use_bias", True))
    if kind in ("max_pooling2d", "average_pooling2d"):
        cls = layers.MaxPooling2D if kind == "max_pooling2d" else layers.AveragePooling2D
        return cls(pair(layer.get("pool_size"), (2, 2)), strides=pair(layer.get("strides"), None),
                   padding=layer.get("padding", "valid"))
    if kind == "global_average_pooling2d":
        return layers.GlobalAveragePooling2D()
    if kind == "flatten":
        return layers.Flatten()
    if kind == "dense":
        return layers.Dense(layer["units"], activation=layer.get("activation", "linear"),
                            use_bias=layer.get("use_bias", True))
    if kind == "dropout":
        return layers.Dropout(layer["rate"])
    if kind == "batch_normalization":
        return layers.BatchNormalization(momentum=layer.get("momentum", 0.99), epsilon=layer.get("epsilon", 1e-3))
    if kind == "activation":
        return layers.Activation(layer["activation"])
    if kind == "leaky_relu":
        return layers.LeakyReLU(negative_slope=layer.get("alpha", 0.3))
    raise ValueError(kind)


def keras_model(config):
    import keras

    h, w = config["data"]["image_size"]
    c = 1 if config["data"].get("color_mode") == "grayscale" else 3
    return keras.Sequential([keras.Input((h, w, c))] + [keras_layer(l) for l in config["model"]["layers"]])


def set_runner_weights(model, config, tensors):
    """Gives the Keras model runner's tensors {name: array}, through the converter's inverse."""
    weighted = [l for l in model.layers if l.weights]
    for layer, (_, arrays) in zip(weighted, conv.to_keras(tensors, conv.plan(config))):
        layer.set_weights(arrays)


def runner_weights(model, config):
    """The Keras model's weights in runner's layout, through the converter."""
    weights = {l.name: [np.asarray(v) for v in l.get_weights()] for l in model.layers if l.weights}
    order = [l.name for l in model.layers]
    return conv.convert(weights, order, conv.plan(config))


def digest(tensors):
    out = {}
    for name, _, a in tensors:
        flat = a.reshape(-1).astype(np.float64)
        at = np.linspace(0, flat.size - 1, 16).round().astype(int)
        out[name] = {"sum": flat.sum(), "sum_squares": (flat**2).sum(), "at": at.tolist(), "values": flat[at].tolist()}
    return out


# Each optimizer: runner's [train] keys (and schedule table), and the Keras optimizer.
def optimizers():
    import keras

    o, s = keras.optimizers, keras.optimizers.schedules
    return {
        "adam": ('optimizer = "adam"\nlearning_rate = 0.001', lambda: o.Adam(1e-3)),
        "adamw": ('optimizer = "adamw"\nlearning_rate = 0.001', lambda: o.AdamW(1e-3)),
        "sgd_nesterov": ('optimizer = "sgd"\nlearning_rate = 0.01\nmomentum = 0.9\nnesterov = true',
                         lambda: o.SGD(0.01, momentum=0.9, nesterov=True)),
        "rmsprop": ('optimizer = "rmsprop"\nlearning_rate = 0.001', lambda: o.RMSprop(1e-3)),
        "rmsprop_centered_momentum": (
            'optimizer = "rmsprop"\nlearning_rate = 0.0005\nmomentum = 0.5\ncentered = true',
            lambda: o.RMSprop(5e-4, momentum=0.5, centered=True)),
        "adam_cosine": ('optimizer = "adam"\nlearning_rate = 0.002\n[train.lr_schedule]\ntype = "cosine"\nalpha = 0.1',
                        lambda: o.Adam(s.CosineDecay(2e-3, STEPS, alpha=0.1))),
        "sgd_momentum_exponential": (
            'optimizer = "sgd"\nlearning_rate = 0.02\nmomentum = 0.9\n'
            '[train.lr_schedule]\ntype = "exponential"\ndecay_steps = 6\ndecay_rate = 0.5',
            lambda: o.SGD(s.ExponentialDecay(0.02, 6, 0.5), momentum=0.9)),
        "sgd_global_clipnorm": ('optimizer = "sgd"\nlearning_rate = 0.05\nmomentum = 0.9\nglobal_clipnorm = 0.5',
                                lambda: o.SGD(0.05, momentum=0.9, global_clipnorm=0.5)),
        "adam_clipnorm": ('optimizer = "adam"\nlearning_rate = 0.001\nclipnorm = 0.05',
                          lambda: o.Adam(1e-3, clipnorm=0.05)),
    }


def baseline_batches():
    """8 batches of 32 bundled images, classes taken in turn: (files, x (n, 28, 28, 1), labels)."""
    from PIL import Image

    data = REPO / "data" / "fashion_mnist"
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    files = [sorted((data / c).iterdir()) for c in classes]
    picked = [(files[c][k], c) for k in range(26) for c in range(len(classes))][: 8 * 32]
    x = np.stack([np.asarray(Image.open(p).convert("L"), np.float32) / 255.0 for p, _ in picked])[..., None]
    return [str(p.relative_to(REPO)) for p, _ in picked], x, np.array([c for _, c in picked])


def tutorial_batches():
    """3 batches of 8 splitmix images, 46x46x3 (generated as runner's CHW rows), labels alternating."""
    n, c, h, w = 24, 3, 46, 46
    chw = unit(0xBA7C, n * c * h * w).astype(np.float32).reshape(n, c, h, w)
    return chw.transpose(0, 2, 3, 1), np.arange(n) % 2


def train_all():
    import keras

    runs = {}
    base = experiment("experiments/baseline.toml")
    files, bx, by = baseline_batches()
    keras.utils.set_random_seed(0)
    init_model = keras_model(base)
    init = runner_weights(init_model, base)
    (OUT / "baseline_init.safetensors").write_bytes(conv.safetensors_bytes(init, {"source": "keras 3 glorot_uniform, seed 0"}))
    init = {n: a for n, _, a in init}
    tut = experiment("experiments/cats_vs_dogs.toml", [46, 46])
    tx, ty = tutorial_batches()
    tut_init = {f"{name}/{weight}": None for name, _, params, _ in conv.plan(tut) for weight, _ in params}
    dims = [d for _, _, params, _ in conv.plan(tut) for _, d in params]
    tut_init = {name: glorot_like(i, d) for i, (name, d) in enumerate(zip(tut_init, dims))}
    models = {
        "baseline": (base, init, bx, by, 32, "sparse_categorical_crossentropy"),
        "tutorial": (tut, tut_init, tx, ty, 8, "binary_crossentropy"),
    }
    def train(config, start, x, y, batch, loss, make):
        keras.utils.set_random_seed(0)
        model = keras_model(config)
        set_runner_weights(model, config, start)
        model.compile(optimizer=make(), loss=loss, jit_compile=False)
        losses = []
        batches = len(x) // batch
        for step in range(STEPS):
            b = step % batches
            logs = model.train_on_batch(x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch], return_dict=True)
            losses.append(float(logs["loss"]))
        return losses, digest(runner_weights(model, config))

    for model_name, (config, start, x, y, batch, loss) in models.items():
        for opt_name, (keys, make) in optimizers().items():
            rate = make()._learning_rate
            if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
                rates = [float(rate(step)) for step in range(STEPS)]
            else:
                rates = [float(rate.numpy())] * STEPS
            losses, weights = train(config, start, x, y, batch, loss, make)
            runs[f"{model_name}/{opt_name}"] = {"train": keys, "learning_rates": rates, "losses": losses, "weights": weights}
            print(f"{model_name}/{opt_name}: loss {losses[0]:.5f} -> {losses[-1]:.5f}", flush=True)
    return {"steps": STEPS, "epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH,
            "baseline": {"files": files, "labels": by.tolist(), "batch_size": 32},
            "tutorial": {"image_size": [46, 46], "batch_size": 8, "labels": ty.tolist()}, "runs": runs}


def _f32(a):
    """A float32 array as a flat list, each value written with the fewest digits that give
    the same float32 back."""
    return [float(str(v)) for v in np.asarray(a, np.float32).reshape(-1)]


def _specs(layers, shape):
    """Runner's parameter tensors [(layer index, weight, dims)] of a layer list on `shape`
    (("image", c, h, w) or ("flat", n)), and the output shape."""
    if shape[0] == "image":
        config = {"data": {"image_size": list(shape[2:]), "color_mode": "grayscale" if shape[1] == 1 else "rgb"},
                  "model": {"layers": layers}}
        planned = conv.plan(config)
        specs = [(i, w, d) for i, (_, _, params, _) in enumerate(planned) for w, d in params]
        return specs, planned
    specs = []
    n = shape[1]
    for i, layer in enumerate(layers):
        if layer["type"] == "dense":
            u = layer["units"]
            specs += [(i, "kernel", [n, u])] + ([(i, "bias", [u])] if layer.get("use_bias", True) else [])
            n = u
        elif layer["type"] == "batch_normalization":
            specs += [(i, w, [n]) for w in conv.WEIGHTED["batch_normalization"]]
    return specs, None


def _param_values(rng, weight, dims):
    n = int(np.prod(dims))
    lo, hi = {"kernel": (-0.5, 0.5), "bias": (-0.2, 0.2), "gamma": (0.5, 1.5), "beta": (-0.3, 0.3),
              "moving_mean": (-0.3, 0.3), "moving_variance": (0.5, 1.5)}[weight]
    return rng.uniform(lo, hi, n).astype(np.float32).reshape(dims)


def _to_keras_layout(x, shape):
    return x.transpose(0, 2, 3, 1) if shape[0] == "image" else x


def _from_keras_layout(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def layer_case(seed, layers, shape, batch=2, x=None):
    """One case: `layers` (runner's tables) on a batch in runner's layout (NCHW or (N, n)),
    with random parameters in runner's layout; Keras' output in inference and in training,
    and the moving averages a training pass leaves in each batch normalisation."""
    import keras

    rng = np.random.default_rng(seed)
    dims = ([batch] + list(shape[1:]))
    if x is None:
        x = rng.uniform(-2.0, 2.0, dims).astype(np.float32)
    specs, planned = _specs(layers, shape)
    params = [(i, w, _param_values(rng, w, d)) for i, w, d in specs]
    inp = shape[1:] if shape[0] == "flat" else (shape[2], shape[3], shape[1])
    model = keras.Sequential([keras.Input(tuple(inp))] + [keras_layer(l) for l in layers])
    if planned is not None:
        named = {f"{planned[i][0]}/{w}": a for i, w, a in params}
        arrays = dict(conv.to_keras(named, planned))
        for i, layer in enumerate(model.layers):
            if planned[i][2]:
                layer.set_weights(arrays[planned[i][0]])
    else:
        for i, layer in enumerate(model.layers):
            mine = [a for j, _, a in params if j == i]
            if mine:
                layer.set_weights(mine)
    xk = _to_keras_layout(x, shape)
    inference = _from_keras_layout(np.asarray(model(xk, training=False)))
    training = _from_keras_layout(np.asarray(model(xk, training=True)))
    moving = {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            moving[str(i)] = {"moving_mean": _f32(layer.moving_mean), "moving_variance": _f32(layer.moving_variance)}
    return {
        "layers": layers,
        "input_shape": list(shape[1:]),
        "batch": batch,
        "x": _f32(x),
        "params": [{"layer": i, "weight": w, "dims": list(a.shape), "values": _f32(a)} for i, w, a in params],
        "inference": _f32(inference),
        # Only where a training pass differs (batch normalisation).
        **({"training": _f32(training)} if not np.array_equal(training, inference) else {}),
        "moving_after_training": moving,
    }


ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softmax"]


def layer_outputs():
    """Every layer kind of src/model/layers/ on fixed inputs, in inference and training."""
    import keras

    image = ("image", 3, 7, 6)
    cases = {}
    conv_cases = {
        "valid": {"filters": 4, "kernel_size": 3},
        "same_stride2_relu": {"filters": 4, "kernel_size": [3, 2], "strides": 2, "padding": "same",
                              "activation": "relu"},
        "dilation2_no_bias": {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "use_bias": False},
    }
    for k, (name, keys) in enumerate(conv_cases.items()):
        cases[f"conv2d/{name}"] = layer_case(100 + k, [{"type": "conv2d", **keys}], image)
    for kind in ("max_pooling2d", "average_pooling2d"):
        windows = {
            "2_valid": {"pool_size": 2},
            "2_same": {"pool_size": 2, "padding": "same"},
            "3_stride2_valid": {"pool_size": 3, "strides": 2},
            "3_stride2_same": {"pool_size": 3, "strides": 2, "padding": "same"},
            "2x3_stride1x2_same": {"pool_size": [2, 3], "strides": [1, 2], "padding": "same"},
        }
        for k, (name, keys) in enumerate(windows.items()):
            cases[f"{kind}/{name}"] = layer_case(200 + k, [{"type": kind, **keys}], image)
    cases["global_average_pooling2d"] = layer_case(300, [{"type": "global_average_pooling2d"}], image)
    cases["flatten+dense"] = layer_case(301, [{"type": "flatten"}, {"type": "dense", "units": 5}], image)
    for k, act in enumerate(ACTIVATIONS):
        cases[f"dense/{act}"] = layer_case(400 + k, [{"type": "dense", "units": 4, "activation": act}], ("flat", 6))
    # Values from -8 to 8 (sigmoid and softmax saturate, elu and gelu curve) for each activation.
    ramp = np.linspace(-8.0, 8.0, 2 * 17, dtype=np.float32).reshape(2, 17)
    for act in ACTIVATIONS:
        cases[f"activation/{act}"] = layer_case(0, [{"type": "activation", "activation": act}], ("flat", 17), x=ramp)
    cases["leaky_relu/default"] = layer_case(0, [{"type": "leaky_relu"}], ("flat", 17), x=ramp)
    cases["leaky_relu/alpha_0.1"] = layer_case(0, [{"type": "leaky_relu", "alpha": 0.1}], ("flat", 17), x=ramp)
    bn = {"type": "batch_normalization", "momentum": 0.9, "epsilon": 0.001}
    cases["batch_normalization/image"] = layer_case(500, [bn], image, batch=3)
    cases["batch_normalization/flat_defaults"] = layer_case(501, [{"type": "batch_normalization"}], ("flat", 5), batch=4)
    cases["conv2d+batch_normalization"] = layer_case(502, [{"type": "conv2d", "filters": 3, "kernel_size": 3}, bn], image, batch=3)

    # Dropout: inference is the identity; a training pass keeps x / (1 - rate) or drops to 0,
    # with its own random mask, so what is recorded is Keras' kept value and dropped share.
    dropout = {}
    for rate in (0.25, 0.5):
        keras.utils.set_random_seed(0)
        layer = keras.layers.Dropout(rate)
        ones = np.ones((64, 100), np.float32)
        y = np.asarray(layer(ones, training=True))
        kept = np.unique(y[y != 0])
        dropout[str(rate)] = {"kept": _f32(kept), "dropped_share": float((y == 0).mean()), "n": int(y.size),
                              "inference_is_identity": bool((np.asarray(layer(ones, training=False)) == ones).all())}
    case = layer_case(600, [{"type": "dropout", "rate": 0.4}], image)
    case.pop("training", None)
    cases["dropout/inference"] = case
    return {"cases": cases, "dropout": dropout}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _loss_case(kind, logits, labels, smoothing):
    """Keras' value of one loss on logits three ways: from the logits, from probabilities (the
    clipped formula), and as `fit` computes it for a model whose last layer applies the
    activation (the value runner must match)."""
    import keras

    units = logits.shape[1]
    if kind == "binary_crossentropy":
        y = labels.reshape(-1, 1).astype(np.float32)
        make = lambda logits_: keras.losses.BinaryCrossentropy(from_logits=logits_, label_smoothing=smoothing)  # noqa: E731
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        act = "sigmoid"
    else:
        # Keras' sparse loss has no label smoothing; with smoothing it is the categorical loss
        # of one-hot targets, which is what runner's sparse loss computes.
        if kind == "sparse_categorical_crossentropy" and smoothing == 0.0:
            y = labels.astype(np.int64)
            make = lambda logits_: keras.losses.SparseCategoricalCrossentropy(from_logits=logits_)  # noqa: E731
        else:
            y = np.eye(units, dtype=np.float32)[labels]
            make = lambda logits_: keras.losses.CategoricalCrossentropy(from_logits=logits_, label_smoothing=smoothing)  # noqa: E731
        probs = _softmax(logits.astype(np.float64))
        act = "softmax"
    from_logits = float(make(True)(y, logits))
    from_probabilities = float(make(False)(y, probs.astype(np.float32)))
    model = keras.Sequential([keras.Input((units,)), keras.layers.Activation(act)])
    model.compile(loss=make(False), jit_compile=False)
    in_fit = float(model.evaluate(logits, y, batch_size=len(logits), verbose=0))
    return {"loss": kind, "label_smoothing": smoothing, "logits": _f32(logits), "units": units,
            "labels": labels.tolist(), "from_logits": from_logits, "from_probabilities": from_probabilities,
            "in_fit": in_fit}


def _weighted_case(kind, logits, labels, class_weight, smoothing):
    """The loss `fit(class_weight=...)` reports for one batch (an optimizer with rate 0, so the
    step changes nothing): each sample's loss times its class's weight, over the batch size."""
    import keras

    units = logits.shape[1]
    if kind == "binary_crossentropy":
        y = labels.reshape(-1, 1).astype(np.float32)
        loss, act = keras.losses.BinaryCrossentropy(label_smoothing=smoothing), "sigmoid"
    else:
        y = np.eye(units, dtype=np.float32)[labels]
        loss, act = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), "softmax"
    model = keras.Sequential([keras.Input((units,)), keras.layers.Activation(act)])
    model.compile(loss=loss, optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    history = model.fit(logits, y, class_weight=class_weight, batch_size=len(logits), epochs=1, verbose=0,
                        shuffle=False)
    in_fit = float(history.history["loss"][0])
    return {"loss": kind, "label_smoothing": smoothing, "logits": _f32(logits), "units": units,
            "labels": labels.tolist(), "class_weight": [class_weight[c] for c in range(max(units, 2))],
            "from_logits": in_fit, "from_probabilities": in_fit, "in_fit": in_fit}


def _multi_label_case(logits, targets, smoothing):
    """Binary cross-entropy on several sigmoid units against 0/1 targets (multi-label), as
    `fit` computes it: the mean over the labels, then over the batch."""
    import keras

    units = logits.shape[1]
    make = lambda logits_: keras.losses.BinaryCrossentropy(from_logits=logits_, label_smoothing=smoothing)  # noqa: E731
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    model = keras.Sequential([keras.Input((units,)), keras.layers.Activation("sigmoid")])
    model.compile(loss=make(False), jit_compile=False)
    y = targets.astype(np.float32)
    return {"loss": "binary_crossentropy", "label_smoothing": smoothing, "logits": _f32(logits), "units": units,
            "targets": y.astype(int).tolist(), "from_logits": float(make(True)(y, logits)),
            "from_probabilities": float(make(False)(y, probs.astype(np.float32))),
            "in_fit": float(model.evaluate(logits, y, batch_size=len(logits), verbose=0))}


def loss_values():
    """Each loss, with and without label smoothing, on ordinary and on saturated logits (where
    the clipped probability formula and the logits formula part)."""
    rng = np.random.default_rng(7)
    multi = rng.normal(0.0, 2.0, (8, 5)).astype(np.float32)
    multi[0] = [30.0, -5.0, 0.0, 2.0, -30.0]  # label 4: probability far below 1e-7
    multi[1] = [-20.0, 25.0, 0.0, 1.0, -3.0]  # label 1: probability 1 within float32
    multi_labels = np.array([4, 1, 0, 2, 3, 4, 1, 2])
    binary = rng.normal(0.0, 3.0, (8, 1)).astype(np.float32)
    binary[0, 0], binary[1, 0] = 25.0, -40.0  # both wrong and saturated
    binary_labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    cases = {}
    for smoothing in (0.0, 0.1, 0.25):
        for kind in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
            cases[f"{kind}/{smoothing:g}"] = _loss_case(kind, multi, multi_labels, smoothing)
            cases[f"{kind}/{smoothing:g}/ordinary"] = _loss_case(kind, multi[2:], multi_labels[2:], smoothing)
        cases[f"binary_crossentropy/{smoothing:g}"] = _loss_case("binary_crossentropy", binary, binary_labels, smoothing)
        cases[f"binary_crossentropy/{smoothing:g}/ordinary"] = _loss_case(
            "binary_crossentropy", binary[2:], binary_labels[2:], smoothing)
    # `train.class_weight`: fit's weighted loss, and several sigmoid units (multi-label).
    tags = rng.normal(0.0, 2.0, (8, 3)).astype(np.float32)
    tag_targets = (rng.random((8, 3)) < 0.4).astype(int)
    tag_targets[0] = 0  # an image without any label
    for smoothing in (0.0, 0.1):
        cases[f"binary_crossentropy/class_weight/{smoothing:g}"] = _weighted_case(
            "binary_crossentropy", binary, binary_labels, {0: 0.6, 1: 2.5}, smoothing)
        cases[f"categorical_crossentropy/class_weight/{smoothing:g}"] = _weighted_case(
            "categorical_crossentropy", multi[2:], multi_labels[2:], {0: 1.0, 1: 0.5, 2: 3.0, 3: 0.25, 4: 1.5},
            smoothing)
        cases[f"binary_crossentropy/multi_label/{smoothing:g}"] = _multi_label_case(tags, tag_targets, smoothing)
    return {"cases": cases}


def _metric_case(logits, labels, batches, top_k):
    """Keras' metrics on `logits` fed in `batches` (state carried across them, as over an epoch)."""
    import keras

    units = logits.shape[1]
    parts = np.array_split(np.arange(len(labels)), batches)
    out = {}
    if units == 1:
        probs = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        y = labels.reshape(-1, 1).astype(np.float32)
        metrics = {"accuracy": keras.metrics.BinaryAccuracy(), "precision": keras.metrics.Precision(),
                   "recall": keras.metrics.Recall(), "f1_score": keras.metrics.F1Score(threshold=0.5)}
        for name, m in metrics.items():
            for p in parts:
                m.update_state(y[p], probs[p])
            out[name] = float(np.asarray(m.result()).reshape(-1)[0])
        return out
    probs = _softmax(logits.astype(np.float64)).astype(np.float32)
    onehot = np.eye(units, dtype=np.float32)[labels]
    # runner's precision and recall of several classes are per class, of the arg-max
    # prediction, averaged over classes: Keras' class_id metrics on the arg-max one-hot.
    predicted = np.eye(units, dtype=np.float32)[probs.argmax(axis=1)]
    acc = keras.metrics.SparseCategoricalAccuracy()
    top = keras.metrics.SparseTopKCategoricalAccuracy(k=top_k)
    f1 = keras.metrics.F1Score(average="macro", threshold=None)
    per_class = {"precision": [keras.metrics.Precision(class_id=c) for c in range(units)],
                 "recall": [keras.metrics.Recall(class_id=c) for c in range(units)]}
    for p in parts:
        acc.update_state(labels[p], probs[p])
        top.update_state(labels[p], probs[p])
        f1.update_state(onehot[p], probs[p])
        for ms in per_class.values():
            for m in ms:
                m.update_state(onehot[p], predicted[p])
    out["accuracy"] = float(acc.result())
    out["top_k_accuracy"] = float(top.result())
    out["f1_score"] = float(f1.result())
    for name, ms in per_class.items():
        out[name] = float(np.mean([float(m.result()) for m in ms]))
    return out


def metric_values():
    """Each metric runner supports on fixed predictions, fed in batches as over an epoch: four
    classes (one never predicted, no ties) and one sigmoid unit."""
    rng = np.random.default_rng(11)
    n = 30
    labels = rng.integers(0, 4, n)
    logits = rng.normal(0.0, 1.0, (n, 4)).astype(np.float32)
    logits[:, 3] -= 4.0  # class 3 is never the arg-max
    logits[: n // 2, :] += 1.5 * np.eye(4, dtype=np.float32)[labels[: n // 2]]
    b_labels = rng.integers(0, 2, n)
    b_logits = (rng.normal(0.0, 1.5, (n, 1)) + 0.8 * (2 * b_labels[:, None] - 1)).astype(np.float32)
    cases = {
        "four_classes": {"logits": _f32(logits), "units": 4, "labels": labels.tolist(), "batches": 3, "top_k": 2,
                         "values": _metric_case(logits, labels, 3, 2)},
        "four_classes_top3": {"logits": _f32(logits), "units": 4, "labels": labels.tolist(), "batches": 1,
                              "top_k": 3, "values": _metric_case(logits, labels, 1, 3)},
        "binary": {"logits": _f32(b_logits), "units": 1, "labels": b_labels.tolist(), "batches": 3, "top_k": 1,
                   "values": _metric_case(b_logits, b_labels, 3, 1)},
    }
    return {"cases": cases}


def main():
    import argparse

    parts = {"training": train_all, "layers": layer_outputs, "losses": loss_values, "metrics": metric_values}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(parts), default=list(parts),
                   help="write only these files (default: all)")
    args = p.parse_args()
    import keras
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    OUT.mkdir(exist_ok=True)
    versions = {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__}
    for name in args.only:
        value = parts[name]()
        value["versions"] = versions
        (OUT / f"{name}.json").write_text(json.dumps(value, indent=1) + "\n")
        print(f"{OUT / name}.json: {(OUT / f'{name}.json').stat().st_size} bytes", flush=True)


if __name__ == "__main__":
    main()
