"""Converts the weights of a Keras model (a `.keras` file or a `.weights.h5`) into the
safetensors file runner reads for the same model (`[model] weights = "..."`, or
`Network::load_weights`).

    python tests/reference/keras_to_safetensors.py model.keras experiments/baseline.toml -o weights.safetensors

The experiment file says what the model is: its `[data]` image size and colour mode and its
`[[model.layers]]`. Each layer with weights (conv2d, dense, batch_normalization) takes the
Keras layer of the same kind at the same position among layers of that kind (Keras names
them `conv2d`, `conv2d_1`, ... in the order they were built; a `.keras` file also records the
order), and every tensor's shape is checked against what runner builds, so a model that does
not match stops with the tensor that differs.

What changes on the way:
- tensor names: runner's `<layer>/<weight>` (`conv2d/kernel`, `dense_1/bias`,
  `batch_normalization/moving_mean`), layers named by kind and count as runner names them;
- conv kernels: Keras' (kh, kw, in, out) becomes runner's (out, in, kh, kw);
- dense kernels stay (in, out), but Keras flattens an image in (height, width, channel) order
  and runner in (channel, height, width) order, so the rows of a dense kernel (and the vectors
  of a batch normalisation) that read a flattened image are permuted to runner's order.

Needs numpy and h5py only (not TensorFlow); Python 3.11+ for tomllib.
"""

import argparse
import io
import json
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import h5py
import numpy as np

WEIGHTED = {"conv2d": ["kernel", "bias"], "dense": ["kernel", "bias"],
            "batch_normalization": ["gamma", "beta", "moving_mean", "moving_variance"]}


class Mismatch(Exception):
    """The Keras model is not the one the experiment file describes."""


def _pair(v, default):
    if v is None:
        return default
    return (v, v) if isinstance(v, int) else tuple(v)


def _out(size, window, stride, padding):
    if padding == "same":
        return -(-size // stride)
    if size < window:
        raise Mismatch(f"a window of {window} does not fit {size}")
    return (size - window) // stride + 1


def plan(config):
    """Runner's layers for an experiment table: (name, kind, params [(weight, dims)], flatten
    permutation of the layer's flat input or None)."""
    data = config.get("data", {})
    h, w = _pair(data.get("image_size"), None) or (None, None)
    if h is None:
        raise Mismatch("the experiment file has no data.image_size")
    c = 1 if data.get("color_mode", "rgb") == "grayscale" else 3
    shape = ("image", c, h, w)
    perm = None  # runner feature j is Keras feature perm[j]
    counts, out = {}, []
    for layer in config.get("model", {}).get("layers", []):
        kind = layer["type"]
        n = counts.get(kind, 0)
        counts[kind] = n + 1
        name = kind if n == 0 else f"{kind}_{n}"
        params, used_perm = [], perm
        if kind == "conv2d":
            _, c, h, w = shape
            kh, kw = _pair(layer["kernel_size"], None)
            sh, sw = _pair(layer.get("strides"), (1, 1))
            dh, dw = _pair(layer.get("dilation_rate"), (1, 1))
            pad = layer.get("padding", "valid")
            f = layer["filters"]
            params = [("kernel", [f, c, kh, kw])] + ([("bias", [f])] if layer.get("use_bias", True) else [])
            shape = ("image", f, _out(h, (kh - 1) * dh + 1, sh, pad), _out(w, (kw - 1) * dw + 1, sw, pad))
        elif kind in ("max_pooling2d", "average_pooling2d"):
            _, c, h, w = shape
            ph, pw = _pair(layer.get("pool_size"), (2, 2))
            sh, sw = _pair(layer.get("strides"), (ph, pw))
            pad = layer.get("padding", "valid")
            shape = ("image", c, _out(h, ph, sh, pad), _out(w, pw, sw, pad))
        elif kind == "global_average_pooling2d":
            shape, perm = ("flat", shape[1]), None
        elif kind == "flatten":
            if shape[0] == "image":
                _, c, h, w = shape
                ci, hi, wi = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
                perm = ((hi * w + wi) * c + ci).reshape(-1)
                shape = ("flat", c * h * w)
        elif kind == "dense":
            units = layer["units"]
            params = [("kernel", [shape[1], units])] + ([("bias", [units])] if layer.get("use_bias", True) else [])
            shape, perm = ("flat", units), None
        elif kind == "batch_normalization":
            ch = shape[1]
            params = [(p, [ch]) for p in WEIGHTED[kind]]
        out.append((name, kind, params, used_perm))
    return out


def keras_layers(path):
    """{layer name: [arrays]} and the layer names in model order (None for a bare .weights.h5)."""
    path = Path(path)
    order = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            order = [l["config"]["name"] for l in config["config"]["layers"] if l["class_name"] != "InputLayer"]
            f = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    else:
        f = h5py.File(path, "r")
    weights = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and len(obj):
            layer = obj.attrs.get("name") or name.split("/")[-2]
            weights[str(layer)] = [np.asarray(obj[str(i)], dtype=np.float32) for i in range(len(obj))]

    f.visititems(visit)
    return weights, order


def _kind_of(keras_name):
    return re.sub(r"_\d+$", "", keras_name)


def convert(keras_weights, order, layers):
    """Runner's tensors [(name, dims, float32 array)] from Keras' weights, checked against `layers`."""
    if order is None:
        def number(n):
            m = re.search(r"_(\d+)$", n)
            return int(m.group(1)) if m else 0
        order = sorted(keras_weights, key=lambda n: (_kind_of(n), number(n)))
    by_kind = {}
    for n in order:
        if n in keras_weights:
            by_kind.setdefault(_kind_of(n), []).append(n)
    tensors = []
    for name, kind, params, perm in layers:
        if not params:
            continue
        queue = by_kind.get(kind, [])
        if not queue:
            raise Mismatch(f"the Keras model has fewer {kind} layers with weights than the experiment ({name} has none)")
        arrays = keras_weights[queue.pop(0)]
        if len(arrays) != len(params):
            raise Mismatch(f"{name}: the Keras layer has {len(arrays)} tensors, runner's {len(params)}")
        for (weight, dims), a in zip(params, arrays):
            if kind == "conv2d" and weight == "kernel":
                a = a.transpose(3, 2, 0, 1)
            elif perm is not None and (kind == "batch_normalization" or weight == "kernel"):
                a = a[perm]
            if list(a.shape) != dims:
                raise Mismatch(f"{name}/{weight}: the Keras tensor becomes {list(a.shape)}, runner needs {dims}")
            tensors.append((f"{name}/{weight}", dims, np.ascontiguousarray(a, dtype=np.float32)))
    left = [n for names in by_kind.values() for n in names]
    if left:
        raise Mismatch(f"the Keras model has layers the experiment does not: {', '.join(left)}")
    return tensors


def to_keras(tensors, layers):
    """The inverse of `convert`: runner's tensors {name: array} as Keras' per-layer lists, in
    runner's layer order (for `layer.set_weights`)."""
    out = []
    for name, kind, params, perm in layers:
        if not params:
            continue
        arrays = []
        for weight, _ in params:
            a = np.asarray(tensors[f"{name}/{weight}"], dtype=np.float32)
            if kind == "conv2d" and weight == "kernel":
                a = a.transpose(2, 3, 1, 0)
            elif perm is not None and (kind == "batch_normalization" or weight == "kernel"):
                inverse = np.empty_like(perm)
                inverse[perm] = np.arange(len(perm))
                a = a[inverse]
            arrays.append(a)
        out.append((name, arrays))
    return out


def safetensors_bytes(tensors, metadata=None):
    """The safetensors encoding of [(name, dims, array)], in that order, as runner writes it."""
    header, offset = {"__metadata__": metadata or {}}, 0
    for name, dims, a in tensors:
        header[name] = {"dtype": "F32", "shape": list(dims), "data_offsets": [offset, offset + 4 * a.size]}
        offset += 4 * a.size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    body = b"".join(a.astype("<f4").tobytes() for _, _, a in tensors)
    return len(head).to_bytes(8, "little") + head + body


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("keras_file", help="a .keras model or a .weights.h5")
    p.add_argument("experiment", help="the runner experiment file (.toml) describing the same model")
    p.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    args = p.parse_args()
    try:
        with open(args.experiment, "rb") as f:
            config = tomllib.load(f)
        if "extends" in config:
            raise Mismatch(f"{args.experiment} extends another file; give the file that holds [data] and [[model.layers]]")
        weights, order = keras_layers(args.keras_file)
        tensors = convert(weights, order, plan(config))
    except (Mismatch, KeyError, OSError, ValueError) as e:
        sys.exit(f"error: {args.keras_file} does not fit {args.experiment}: {e}")
    Path(args.output).write_bytes(safetensors_bytes(tensors, {"source": Path(args.keras_file).name}))
    print(f"wrote {args.output}: {len(tensors)} tensors, {sum(a.size for _, _, a in tensors)} values")


if __name__ == "__main__":
    main()
