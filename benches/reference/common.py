"""What the reference benchmarks share: the tutorial CNN's sizes, the command line, the
timing loop and the memory figures, so that PyTorch and Keras are measured the same way."""

import argparse
import time

# The tutorial's network: 3x3 convolutions with these filters, each followed by a 2x2 max
# pool, then one hidden dense layer and one sigmoid unit.
CONV_FILTERS = (16, 32, 64, 128)
IMAGE_SIZE = 128
DENSE_UNITS = 256
EXPECTED_PARAMS = 1_277_601


def arg_parser(doc, threads_help):
    """The options every reference benchmark takes; a script adds its own before parsing."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help=threads_help)
    p.add_argument("--batch", type=int, default=32, help="images per step (default 32, the tutorial's)")
    p.add_argument("--steps", type=int, default=15, help="timed steps of each kind (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse(p):
    """Parses the command line, refusing counts that would time nothing."""
    args = p.parse_args()
    if args.batch < 1 or args.steps < 1 or args.warmup < 0 or getattr(args, "reps", 0) < 0:
        p.error("--batch and --steps must be at least 1, --warmup and --reps at least 0")
    return args


def check_params(params):
    """Stops when the model built is not the tutorial's, whose figures would mean nothing."""
    if params != EXPECTED_PARAMS:
        raise SystemExit(f"the model has {params} parameters, the tutorial's has {EXPECTED_PARAMS}")


def proc_status_mib(field):
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def timed(fn, warmup, steps):
    """Runs fn warmup + steps times; returns the durations of the last `steps` runs, in seconds."""
    durations = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            durations.append(time.perf_counter() - start)
    return durations


def peak_memory(rss_after_import):
    """(peak, peak above the resident memory right after the framework's import), MiB or None."""
    peak = proc_status_mib("VmHWM")
    above = peak - rss_after_import if peak is not None and rss_after_import is not None else None
    return peak, above


def mib(value):
    """`123 MiB`, or `-` when unknown."""
    return "-" if value is None else f"{value:.0f} MiB"


def field(value):
    """A number for the RESULT line, empty when unknown."""
    return "" if value is None else f"{value:.0f}"
