#!/usr/bin/env python3
"""The tutorial CNN of experiments/cats_vs_dogs.toml, timed in PyTorch (eager mode, CPU).

Measures what `runner bench experiments/cats_vs_dogs.toml` measures, on the same kind of
input: one batch of random images already in memory (no decoding, no augmentation).

  training step   zero the gradients, forward, binary cross-entropy, backward, Adam step
  inference       forward pass under torch.inference_mode()

Each figure is the median over --steps timed steps, after --warmup untimed ones, and is
reported as images per second (batch / median step time).

The sigmoid of the last layer is folded into the loss (BCEWithLogitsLoss), as runner and
Keras also do internally: the same model, in its numerically stable form.

Peak memory is this process's VmHWM (Linux); "above import" subtracts the resident memory
measured right after `import torch`, which is mostly the library's own code and data.

Usage:
  python benches/reference/bench_torch.py --threads 2 --steps 15 --warmup 3 [--channels-last]
"""

import platform
import statistics

from common import CONV_FILTERS, DENSE_UNITS, IMAGE_SIZE, arg_parser, check_params, field, mib, parse, peak_memory, proc_status_mib, timed

IMAGE = (3, IMAGE_SIZE, IMAGE_SIZE)  # channels, height, width


def parse_args():
    p = arg_parser(__doc__, "intra-op threads (0: PyTorch's default)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout instead of NCHW")
    return parse(p)


def build_model(nn):
    layers = []
    channels, height, width = IMAGE
    for filters in CONV_FILTERS:
        layers += [nn.Conv2d(channels, filters, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = filters, (height - 2) // 2, (width - 2) // 2
    layers += [
        nn.Flatten(),
        nn.Linear(channels * height * width, DENSE_UNITS),
        nn.ReLU(),
        nn.Linear(DENSE_UNITS, 1),  # the sigmoid is in the loss
    ]
    return nn.Sequential(*layers)


def main():
    args = parse_args()

    import torch
    from torch import nn

    rss_after_import = proc_status_mib("VmRSS")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_model(nn).to(memory_format=layout)
    params = sum(p.numel() for p in model.parameters())
    check_params(params)

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand((args.batch, *IMAGE), generator=gen).contiguous(memory_format=layout)
    y = torch.randint(0, 2, (args.batch, 1), generator=gen).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    last_loss = [float("nan")]

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        last_loss[0] = loss.item()  # waits for the step to finish

    def infer_step():
        with torch.inference_mode():
            model(x)[0, 0].item()

    model.train()
    train = timed(train_step, args.warmup, args.steps)
    model.eval()
    infer = timed(infer_step, args.warmup, args.steps)

    train_s, infer_s = statistics.median(train), statistics.median(infer)
    peak, above = peak_memory(rss_after_import)

    print(
        f"torch {torch.__version__}, python {platform.python_version()}: "
        f"{torch.get_num_threads()} threads, layout {'channels_last' if args.channels_last else 'NCHW'}, "
        f"batch {args.batch}, {params} parameters (random data, median of {args.steps} steps "
        f"after {args.warmup} warm-up)"
    )
    print(f"training:  {args.batch / train_s:9.1f} images/s  ({train_s * 1e3:.1f} ms per step; final loss {last_loss[0]:.4f})")
    print(f"inference: {args.batch / infer_s:9.1f} images/s  ({infer_s * 1e3:.1f} ms per batch)")
    print(f"peak memory: {mib(peak)} ({mib(above)} above `import torch`)")
    print(
        "RESULT stack=torch "
        f"layout={'channels_last' if args.channels_last else 'nchw'} threads={torch.get_num_threads()} "
        f"batch={args.batch} train_img_s={args.batch / train_s:.1f} infer_img_s={args.batch / infer_s:.1f} "
        f"peak_mib={field(peak)} peak_above_import_mib={field(above)}"
    )


if __name__ == "__main__":
    main()
