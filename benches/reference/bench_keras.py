#!/usr/bin/env python3
"""The tutorial CNN of experiments/cats_vs_dogs.toml, timed in Keras 3 on TensorFlow (CPU).

Measures what `runner bench experiments/cats_vs_dogs.toml` measures, on the same kind of
input: random images already in memory (no decoding, no augmentation). Three figures:

  train_on_batch    one optimizer step on one batch (forward, binary cross-entropy,
                    backward, Adam), called in a Python loop: the same unit runner times
  fit               model.fit on in-memory arrays, the call the tutorial makes: one epoch of
                    --steps batches per call, timed from outside (wall clock) and divided by
                    --steps; the first call traces the graph and is not counted, the figure is
                    the median of --reps further calls
  predict_on_batch  a forward pass on one batch

The step figures are medians over --steps timed steps after --warmup untimed ones, reported
as images per second (batch / median step time).

Peak memory is this process's VmHWM (Linux); "above import" subtracts the resident memory
measured right after TensorFlow and Keras were imported.

Usage:
  python benches/reference/bench_keras.py --threads 2 --steps 15 --warmup 3 [--reps 3]
"""

import os
import platform
import statistics
import time

# Before TensorFlow is imported: quieter logs, and Keras on the TensorFlow backend.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common import CONV_FILTERS, DENSE_UNITS, IMAGE_SIZE, arg_parser, check_params, field, mib, parse, peak_memory, proc_status_mib, timed  # noqa: E402

IMAGE = (IMAGE_SIZE, IMAGE_SIZE, 3)  # height, width, channels (Keras' channels_last)


def parse_args():
    p = arg_parser(__doc__, "intra- and inter-op threads (0: TensorFlow's default)")
    p.add_argument("--reps", type=int, default=3, help="timed model.fit epochs (default 3); 0 skips fit")
    return parse(p)


def build_model(keras):
    from keras import layers

    stack = [keras.Input(IMAGE)]
    for filters in CONV_FILTERS:
        stack += [layers.Conv2D(filters, 3, activation="relu"), layers.MaxPooling2D(2)]
    stack += [
        layers.Flatten(),
        layers.Dense(DENSE_UNITS, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ]
    model = keras.Sequential(stack)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy")
    return model


def main():
    args = parse_args()

    import numpy as np
    import tensorflow as tf

    # Thread pools can only be sized before TensorFlow runs its first op.
    if args.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    rss_after_import = proc_status_mib("VmRSS")
    keras.utils.set_random_seed(args.seed)
    model = build_model(keras)
    params = model.count_params()
    check_params(params)

    rng = np.random.default_rng(args.seed)
    x = rng.random((args.batch * args.steps, *IMAGE), dtype=np.float32)
    y = rng.integers(0, 2, (args.batch * args.steps, 1)).astype(np.float32)
    xb, yb = x[: args.batch], y[: args.batch]

    # train_on_batch returns the loss as a Python float, so each call has finished when timed.
    tob = timed(lambda: model.train_on_batch(xb, yb), args.warmup, args.steps)

    fit_per_step = None
    if args.reps > 0:
        epochs = []
        for i in range(1 + args.reps):
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
            if i > 0:
                epochs.append(time.perf_counter() - start)
        fit_per_step = statistics.median(epochs) / args.steps

    infer = timed(lambda: model.predict_on_batch(xb), args.warmup, args.steps)

    tob_s, infer_s = statistics.median(tob), statistics.median(infer)
    peak, above = peak_memory(rss_after_import)
    rate = lambda s: args.batch / s

    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, python {platform.python_version()}: "
        f"{threads} threads, batch {args.batch}, {params} parameters (random data, median of "
        f"{args.steps} steps after {args.warmup} warm-up)"
    )
    print(f"training (train_on_batch): {rate(tob_s):9.1f} images/s  ({tob_s * 1e3:.1f} ms per step)")
    if fit_per_step is not None:
        print(
            f"training (model.fit):     {rate(fit_per_step):9.1f} images/s  ({fit_per_step * 1e3:.1f} ms per step, "
            f"median of {args.reps} epochs of {args.steps} steps)"
        )
    print(f"inference (predict_on_batch): {rate(infer_s):6.1f} images/s  ({infer_s * 1e3:.1f} ms per batch)")
    print(f"peak memory: {mib(peak)} ({mib(above)} above importing TensorFlow and Keras)")
    print(
        "RESULT stack=keras "
        f"threads={args.threads or 'default'} batch={args.batch} "
        f"train_img_s={rate(tob_s):.1f} "
        f"fit_img_s={'' if fit_per_step is None else f'{rate(fit_per_step):.1f}'} "
        f"infer_img_s={rate(infer_s):.1f} "
        f"peak_mib={field(peak)} peak_above_import_mib={field(above)}"
    )


if __name__ == "__main__":
    main()
