"""Times Pillow decoding and resizing a folder of images on one core, the way Keras' `load_img`
and `image_dataset_from_directory` (through PIL) prepare them, for comparison with runner's cold
decode (`cargo bench --bench data -- decode/`), which decodes the same folder into its cache.

Each file is opened, fully decoded (no JPEG draft mode: Keras does not use it), converted to RGB
and resized to the target size with the filter named by `--filter` (Pillow's BILINEAR is the
antialiased bilinear filter runner's `data.interpolation = "bilinear"` also uses; NEAREST and
BOX match `nearest` and `area`). Files are read from disk in every pass, as a cold start does;
the operating system's page cache holds them after the first pass, as it does for runner's
benchmark. The median of `--passes` timed passes is reported.

    cargo bench --bench data -- decode/            # writes target/bench-data/PetImages first
    .venv-bench/bin/python benches/reference/decode_pillow.py target/bench-data/PetImages

Prints one line for people and one `RESULT` line of key=value pairs.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, features

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST, "area": Image.Resampling.BOX}


def decode(path, size, resample):
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), resample)
        return img.tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="dataset folder: one subfolder of images per class")
    parser.add_argument("--size", type=int, default=128, help="side of the square output (default 128)")
    parser.add_argument("--filter", choices=sorted(FILTERS), default="bilinear")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as "per core" says
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        sys.exit(f"{args.folder}: no files; run `cargo bench --bench data -- decode/` first to write them")
    resample = FILTERS[args.filter]
    decode(files[0], args.size, resample)  # warm-up: imports, the decoder's tables
    times = []
    for _ in range(args.passes):
        start = time.perf_counter()
        total = sum(len(decode(p, args.size, resample)) for p in files)
        times.append(time.perf_counter() - start)
        assert total == len(files) * args.size * args.size * 3
    rate = len(files) / statistics.median(times)
    import PIL

    print(
        f"Pillow {PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')}), one core: "
        f"{len(files)} files to {args.size}x{args.size} RGB with {args.filter}: {rate:.0f} img/s "
        f"(median of {args.passes} passes)"
    )
    print(f"RESULT stack=pillow filter={args.filter} size={args.size} files={len(files)} img_s_per_core={rate:.1f}")


if __name__ == "__main__":
    main()
