"""Writes tests/reference/resize.json: two small images (greyscale and RGB, values from a
fixed formula) resized to several sizes, shrinking and enlarging, by the reference for each
`data.interpolation` runner offers:

- bilinear: Pillow's BILINEAR (a triangle filter widened when shrinking, so antialiased);
- area: Pillow's BOX (the mean of the pixels each output pixel covers);
- nearest: TensorFlow's `tf.image.resize(..., method="nearest")`, which Keras'
  `image_dataset_from_directory` calls: the pixel under each output pixel's centre. (Pillow's
  NEAREST steps its source position by repeated addition, so on an exact tie, such as output 7
  of 40 to 50 px, its rounding error picks the pixel before.)

tests/it/data.rs decodes the same pixels through runner and compares.

    python tests/reference/make_resize_reference.py      # needs Pillow and TensorFlow (README.md here)
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import PIL
import tensorflow as tf
from PIL import Image

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "nearest": None, "area": Image.Resampling.BOX}
SIZES = [(16, 12), (9, 5), (20, 10), (50, 45)]  # (width, height)


def pixels(width, height, channels):
    """Smooth ramps plus a hashed ripple, so every filter gives distinct values."""
    return [
        (x * 255 // max(width - 1, 1) + y * 97 // max(height - 1, 1) + ((x * 31 + y * 17 + c * 59) * 2654435761 >> 7) % 41 + c * 40)
        % 256
        for y in range(height)
        for x in range(width)
        for c in range(channels)
    ]


def main():
    cases = []
    for mode, channels, (width, height) in [("L", 1, (37, 23)), ("RGB", 3, (40, 30))]:
        data = pixels(width, height, channels)
        img = Image.frombytes(mode, (width, height), bytes(data))
        for name, resample in FILTERS.items():
            for w, h in SIZES:
                if resample is None:
                    hwc = np.array(data, dtype=np.uint8).reshape(height, width, channels)
                    out = tf.image.resize(hwc, (h, w), method="nearest").numpy().astype(np.uint8)
                else:
                    out = img.resize((w, h), resample)
                cases.append(
                    {
                        "channels": channels,
                        "width": width,
                        "height": height,
                        "interpolation": name,
                        "out_width": w,
                        "out_height": h,
                        "hwc": list(out.tobytes()),
                    }
                )
    target = Path(__file__).parent / "resize.json"
    versions = {"pillow": PIL.__version__, "tensorflow": tf.__version__}
    target.write_text(json.dumps({"versions": versions, "cases": cases}, separators=(",", ":")) + "\n")
    print(f"wrote {target} ({len(cases)} cases, {versions})")


if __name__ == "__main__":
    main()
