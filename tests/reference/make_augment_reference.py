"""Writes tests/reference/keras/augment.safetensors: Keras' own ImageDataGenerator.apply_transform
outputs for a grid of explicit parameter sets on real Fashion-MNIST images, which
tests/it/keras_parity.rs compares with the runner's augment::apply.

Run by hand from the repository root with the versions in tests/reference/README.md:

    python tests/reference/make_augment_reference.py

Every image is a 20x20 crop of a bundled Fashion-MNIST picture (small files, and real pixels up
to the border, where the fill modes act); the RGB image stacks three of them as its channels, and
one 16x24 crop checks the centre-free transforms (shifts, flips) on a non-square image. The
file holds each input (as float32, HWC) and each output (float32, HWC, 0-255, exactly as
apply_transform returns it); its metadata lists the cases with their parameters and the
versions that wrote it.
"""

import json
import os
import struct
import sys

import numpy as np
import scipy
from PIL import Image, __version__ as pil_version

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "reference", "keras", "augment.safetensors")


def fashion(name):
    path = os.path.join(ROOT, "data", "fashion_mnist", name)
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32), f"data/fashion_mnist/{name}"


def images():
    sandal, s_src = fashion("sandal/0000.png")
    shirt, t_src = fashion("tshirt_top/0000.png")
    coat, c_src = fashion("coat/0000.png")
    dress, d_src = fashion("dress/0000.png")
    return {
        "sandal": (sandal[4:24, 4:24, None], f"{s_src} rows 4-23, columns 4-23"),
        "tshirt": (shirt[4:24, 4:24, None], f"{t_src} rows 4-23, columns 4-23"),
        "rgb": (
            np.stack([coat[4:24, 4:24], dress[4:24, 4:24], sandal[4:24, 4:24]], axis=-1),
            f"channels {c_src}, {d_src}, {s_src}, rows 4-23, columns 4-23",
        ),
        "wide": (shirt[6:22, 2:26, None], f"{t_src} rows 6-21, columns 2-25"),
    }


COMBINED = {"theta": -15.0, "tx": 2.0, "ty": -1.5, "shear": 10.0, "zx": 0.9, "zy": 1.15}
GEOMETRY = {
    "rot30": {"theta": 30.0},
    "rot90": {"theta": 90.0},
    "shift": {"tx": 3.5, "ty": -2.25},
    "shear": {"shear": 20.0},
    "zoom_in": {"zx": 0.7, "zy": 0.85},
    "zoom_out": {"zx": 1.4, "zy": 1.25},
    "combined": COMBINED,
    "combined_flips": {**COMBINED, "flip_horizontal": True, "flip_vertical": True},
}
FILLS = [("constant", 60.0), ("nearest", 0.0), ("reflect", 0.0), ("wrap", 0.0)]


def cases():
    """(name, image, params, fill_mode, cval, interpolation_order)."""
    out = []
    for fill, cval in FILLS:
        for g, params in GEOMETRY.items():
            out.append((f"sandal/{g}/{fill}", "sandal", params, fill, cval, 1))
        out.append((f"tshirt/combined/{fill}", "tshirt", COMBINED, fill, cval, 1))
        out.append((f"rgb/combined/{fill}", "rgb", COMBINED, fill, cval, 1))
        out.append((f"wide/shift/{fill}", "wide", GEOMETRY["shift"], fill, cval, 1))
        for g in ["rot30", "zoom_out"]:
            out.append((f"sandal/{g}/{fill}/order0", "sandal", GEOMETRY[g], fill, cval, 0))
    for flips in [{"flip_horizontal": True}, {"flip_vertical": True}, {"flip_horizontal": True, "flip_vertical": True}]:
        tag = "+".join(k.split("_")[1] for k in flips)
        for image in ["rgb", "wide"]:
            out.append((f"{image}/flip_{tag}", image, flips, "nearest", 0.0, 1))
    for intensity in [40.0, -70.0]:
        out.append((f"rgb/channel_shift_{intensity:g}", "rgb", {"channel_shift_intensity": intensity}, "nearest", 0.0, 1))
        params = {**COMBINED, "channel_shift_intensity": intensity}
        out.append((f"rgb/combined+channel_shift_{intensity:g}", "rgb", params, "constant", 60.0, 1))
    for brightness in [0.6, 1.5]:
        out.append((f"rgb/brightness_{brightness:g}", "rgb", {"brightness": brightness}, "nearest", 0.0, 1))
        out.append((f"sandal/brightness_{brightness:g}", "sandal", {"brightness": brightness}, "nearest", 0.0, 1))
        params = {**COMBINED, "flip_horizontal": True, "brightness": brightness}
        out.append((f"rgb/combined+brightness_{brightness:g}", "rgb", params, "reflect", 0.0, 1))
    return out


def safetensors(tensors, metadata):
    """The safetensors layout (as src/results/safetensors.rs reads it), float32 only."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, array in tensors:
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def main():
    imgs = images()
    tensors = [(f"input/{name}", x) for name, (x, _) in imgs.items()]
    listed = []
    for name, image, params, fill, cval, order in cases():
        gen = ImageDataGenerator(fill_mode=fill, cval=cval, interpolation_order=order)
        y = gen.apply_transform(imgs[image][0].copy(), dict(params))
        assert y.shape == imgs[image][0].shape, name
        tensors.append((name, np.asarray(y, dtype=np.float32)))
        listed.append({"name": name, "image": image, "params": params, "fill_mode": fill, "cval": cval,
                       "interpolation_order": order})
    metadata = {
        "cases": json.dumps(listed),
        "images": json.dumps({name: src for name, (_, src) in imgs.items()}),
        "versions": f"keras {keras.__version__}, scipy {scipy.__version__}, numpy {np.__version__}, "
                    f"pillow {pil_version}, python {sys.version.split()[0]}",
    }
    with open(OUT, "wb") as f:
        f.write(safetensors(tensors, metadata))
    print(f"{OUT}: {len(listed)} cases, {os.path.getsize(OUT)} bytes ({metadata['versions']})")


if __name__ == "__main__":
    main()
