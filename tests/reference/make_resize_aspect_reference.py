"""Writes tests/reference/resize_aspect.json: non-square images (greyscale and RGB, the pixel
formula of make_resize_reference.py) brought to other shapes with `data.resize = "crop"` and
`"pad"`, by the code Keras' `image_dataset_from_directory` runs for `crop_to_aspect_ratio` and
`pad_to_aspect_ratio` (`keras.src.utils.image_dataset_utils._load_image_tf`: decode the PNG,
then `smart_resize`, or `tf.image.resize_with_pad`, or plain `tf.image.resize`):

- nearest: Keras itself, on a PNG file, for every case; runner must give the same bytes;
- bilinear, enlarging (the window grows on both sides): Keras itself too (TensorFlow's
  bilinear without antialiasing equals Pillow's triangle filter when enlarging);
- bilinear and area, shrinking: Keras leaves these aliased (no antialiasing), where runner
  filters as Pillow does (README "The image cache"), so the reference is Pillow's BILINEAR or
  BOX resizing the window Keras crops (or the size Keras pads to). The window comes from
  `keras_window` below, which is checked against Keras' own nearest output for every case
  before anything is written.

Each case also records that window (`top`, `left`, `height`, `width`: for crop the part of the
image kept, for pad where the resized image lies in the output), which tests/it/data.rs
compares with runner's `crop_window` and `pad_window`.

    python tests/reference/make_resize_aspect_reference.py   # needs Pillow and TensorFlow (README.md here)
"""

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import numpy as np
import PIL
import tensorflow as tf
from keras.src.utils.image_dataset_utils import _load_image_tf
from PIL import Image

from make_resize_reference import pixels

# (channels, (width, height)): wide, tall, and one far from square.
IMAGES = [(1, (37, 23)), (3, (40, 30)), (1, (23, 41)), (3, (60, 7))]
# (width, height) targets: square shrinking, tall, wide, and enlarging.
SIZES = [(16, 16), (12, 20), (20, 9), (64, 48)]
PILLOW = {"bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX}


def keras_window(resize, height, width, h, w):
    """Keras' rounding, in float32 as its tensors compute it: for crop the window
    `smart_resize` keeps; for pad the size `resize_with_pad` scales to and its offsets."""
    f32 = np.float32
    if resize == "crop":
        crop_h = int(f32(width * h) / f32(w))
        crop_h = max(min(height, crop_h), 1)
        crop_w = int(f32(height * w) / f32(h))
        crop_w = max(min(width, crop_w), 1)
        return int(f32(height - crop_h) / f32(2)), int(f32(width - crop_w) / f32(2)), crop_h, crop_w
    ratio = max(f32(width) / f32(w), f32(height) / f32(h))
    scaled_h, scaled_w = f32(height) / ratio, f32(width) / ratio
    top = max(0, int(np.floor((f32(h) - scaled_h) / f32(2))))
    left = max(0, int(np.floor((f32(w) - scaled_w) / f32(2))))
    return top, left, int(np.floor(scaled_h)), int(np.floor(scaled_w))


def through_window(resize, hwc, window, h, w, resize_fn):
    """`hwc` cropped to, or resized into, `window` of an `h` x `w` output by `resize_fn`."""
    top, left, wh, ww = window
    if resize == "crop":
        return resize_fn(hwc[top : top + wh, left : left + ww], wh, ww, h, w)
    out = np.zeros((h, w, hwc.shape[2]), dtype=np.uint8)
    out[top : top + wh, left : left + ww] = resize_fn(hwc, hwc.shape[0], hwc.shape[1], wh, ww)
    return out


def main():
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for channels, (width, height) in IMAGES:
            hwc = np.array(pixels(width, height, channels), dtype=np.uint8).reshape(height, width, channels)
            png = os.path.join(tmp, f"{width}x{height}.png")
            Image.fromarray(hwc[:, :, 0] if channels == 1 else hwc).save(png)
            for resize in ["crop", "pad"]:
                for w, h in SIZES:
                    window = keras_window(resize, height, width, h, w)
                    flags = {"crop_to_aspect_ratio": resize == "crop", "pad_to_aspect_ratio": resize == "pad"}

                    def keras_load(interpolation):
                        out = _load_image_tf(png, (h, w), channels, interpolation, "channels_last", **flags)
                        return np.round(out.numpy()).astype(np.uint8)

                    def tf_nearest(a, _h, _w, th, tw):
                        return tf.image.resize(a, (th, tw), method="nearest").numpy().astype(np.uint8)

                    nearest = keras_load("nearest")
                    assert np.array_equal(nearest, through_window(resize, hwc, window, h, w, tf_nearest)), (
                        f"keras_window is not Keras' {resize} window for {width}x{height} to {w}x{h}"
                    )
                    results = [("nearest", "keras", nearest)]
                    enlarging = (window[2] <= h and window[3] <= w) if resize == "crop" else (window[2] >= height and window[3] >= width)
                    if enlarging:
                        results.append(("bilinear", "keras", keras_load("bilinear")))
                    for name, resample in PILLOW.items():
                        if name == "bilinear" and enlarging:
                            continue

                        def pillow(a, ah, aw, th, tw):
                            img = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if channels == 1 else a))
                            return np.array(img.resize((tw, th), resample)).reshape(th, tw, channels)

                        results.append((name, "pillow on keras' window", through_window(resize, hwc, window, h, w, pillow)))
                    for interpolation, reference, out in results:
                        cases.append(
                            {
                                "channels": channels,
                                "width": width,
                                "height": height,
                                "resize": resize,
                                "interpolation": interpolation,
                                "reference": reference,
                                "out_width": w,
                                "out_height": h,
                                "window": dict(zip(["top", "left", "height", "width"], window)),
                                "hwc": list(out.tobytes()),
                            }
                        )
    target = Path(__file__).parent / "resize_aspect.json"
    versions = {"keras": keras.__version__, "tensorflow": tf.__version__, "pillow": PIL.__version__}
    target.write_text(json.dumps({"versions": versions, "cases": cases}, separators=(",", ":")) + "\n")
    print(f"wrote {target} ({len(cases)} cases, {versions})")


if __name__ == "__main__":
    main()
