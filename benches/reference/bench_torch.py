#!/usr/bin/env python3
"""The tutorial CNN of experiments/cats_vs_dogs.toml, timed in PyTorch (eager mode, CPU or CUDA).

Measures what `runner bench experiments/cats_vs_dogs.toml` measures, on the same kind of
input: one batch of random images already in memory (no decoding, no augmentation).

  training step   zero the gradients, forward, binary cross-entropy, backward, Adam step
  inference       forward pass under torch.inference_mode()

Each figure is the median over --steps timed steps, after --warmup untimed ones, and is
reported as images per second (batch / median step time).

With --device cuda (or cuda:N) the model and the batch live on that GPU, and every timed step
ends with torch.cuda.synchronize(), so it counts the GPU's work and not only its launch; the
peak GPU memory PyTorch allocated is reported too. --no-tf32 keeps convolutions and matrix
products in float32 (PyTorch lets cuDNN convolutions use TF32 tensor cores by default).

The sigmoid of the last layer is folded into the loss (BCEWithLogitsLoss), as runner and
Keras also do internally: the same model, in its numerically stable form.

Peak memory is this process's VmHWM (Linux); "above import" subtracts the resident memory
measured right after `import torch`, which is mostly the library's own code and data.

Usage:
  python benches/reference/bench_torch.py --threads 2 --steps 15 --warmup 3 [--channels-last]
  python benches/reference/bench_torch.py --device cuda --batch 256 --steps 10 [--no-tf32]
"""

import platform
import statistics

from common import CONV_FILTERS, DENSE_UNITS, IMAGE_SIZE, arg_parser, check_params, field, mib, parse, peak_memory, proc_status_mib, timed

IMAGE = (3, IMAGE_SIZE, IMAGE_SIZE)  # channels, height, width


def parse_args():
    p = arg_parser(__doc__, "intra-op threads (0: PyTorch's default)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout instead of NCHW")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--no-tf32", action="store_true", help="on CUDA: float32 convolutions and products, no TF32")
    args = parse(p)
    if args.device != "cpu" and not args.device.startswith("cuda"):
        p.error(f"--device {args.device}: use cpu, cuda or cuda:N")
    return args


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

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: this PyTorch ({torch.__version__}) sees no CUDA GPU")
        torch.cuda.set_device(device)
        if args.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_model(nn).to(memory_format=layout)
    params = sum(p.numel() for p in model.parameters())
    check_params(params)

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand((args.batch, *IMAGE), generator=gen).contiguous(memory_format=layout)
    y = torch.randint(0, 2, (args.batch, 1), generator=gen).float()
    if cuda:
        model = model.to(device)
        x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    last_loss = [float("nan")]

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        last_loss[0] = loss.item()  # waits for the step to finish
        sync()  # on a GPU, for the optimizer step too

    def infer_step():
        with torch.inference_mode():
            model(x)[0, 0].item()
        sync()

    model.train()
    train = timed(train_step, args.warmup, args.steps)
    model.eval()
    infer = timed(infer_step, args.warmup, args.steps)

    train_s, infer_s = statistics.median(train), statistics.median(infer)
    peak, above = peak_memory(rss_after_import)

    where = f"{torch.get_num_threads()} threads"
    if cuda:
        tf32 = "TF32 off" if args.no_tf32 else f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
        where = f"{torch.cuda.get_device_name(device)} ({args.device}, CUDA {torch.version.cuda}, {tf32})"
    print(
        f"torch {torch.__version__}, python {platform.python_version()}: "
        f"{where}, layout {'channels_last' if args.channels_last else 'NCHW'}, "
        f"batch {args.batch}, {params} parameters (random data, median of {args.steps} steps "
        f"after {args.warmup} warm-up)"
    )
    print(f"training:  {args.batch / train_s:9.1f} images/s  ({train_s * 1e3:.1f} ms per step; final loss {last_loss[0]:.4f})")
    print(f"inference: {args.batch / infer_s:9.1f} images/s  ({infer_s * 1e3:.1f} ms per batch)")
    print(f"peak memory: {mib(peak)} ({mib(above)} above `import torch`)")
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    if cuda:
        print(f"peak GPU memory allocated: {mib(gpu_peak)}")
    print(
        "RESULT stack=torch "
        f"layout={'channels_last' if args.channels_last else 'nchw'} threads={torch.get_num_threads()} "
        f"batch={args.batch} train_img_s={args.batch / train_s:.1f} infer_img_s={args.batch / infer_s:.1f} "
        f"peak_mib={field(peak)} peak_above_import_mib={field(above)}"
        + (f" device={args.device} gpu_peak_mib={field(gpu_peak)} tf32={'off' if args.no_tf32 else 'default'}" if cuda else "")
    )


if __name__ == "__main__":
    main()
