"""runner against PyTorch, Keras and the machine's sgemm rate, interleaved, in one command.

Each round runs, one after another on the same cores: `runner bench` on the tutorial CNN,
bench_torch.py in NCHW and channels_last, bench_keras.py (`train_on_batch`,
`predict_on_batch`) and sgemm_numpy.py; after `--rounds` rounds it prints each figure's median
and the ratios docs/benchmarks.md quotes, with the training rate as a share of the sgemm rate.
That share counts the work of the direct convolutions (`--mflop`, per training image: twice
the multiply-accumulates `runner check` reports, less the first layer's input gradient, which is
never computed), whatever algorithm ran.

    python benches/reference/interleaved.py --runner target/release/runner --threads 2

A stack that is not installed is reported and left out; its ratios are not printed.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def run(cmd, env):
    """Runs cmd; returns its output, or None (with the reason on stderr) when it fails."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    except OSError as e:
        print(f"  {cmd[0]}: cannot run ({e.strerror})", file=sys.stderr)
        return None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        print(f"  {' '.join(map(str, cmd[:3]))} ...: failed ({tail[0] if tail else proc.returncode})", file=sys.stderr)
        return None
    return proc.stdout


def result(out):
    """The key=value pairs of a reference script's RESULT line."""
    line = next((l for l in (out or "").splitlines() if l.startswith("RESULT ")), None)
    return dict(kv.split("=", 1) for kv in line.split()[1:]) if line else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", default="target/release/runner", help="the runner binary")
    p.add_argument("--config", default="experiments/cats_vs_dogs.toml")
    p.add_argument("--threads", type=int, default=2, help="threads for every stack (default 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--mflop", type=float, default=287.8, help="MFLOP per training image (default: the tutorial CNN's)")
    p.add_argument("--set", action="append", default=[], help="passed to runner bench as --set")
    args = p.parse_args()

    py = sys.executable
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    blas_env = {k: v for k, v in env.items() if k != "OPENBLAS_CORETYPE"}
    blas_env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    common = ["--threads", str(args.threads), "--steps", str(args.steps), "--warmup", "3"]
    stacks = {
        "runner": ([args.runner, "bench", args.config, "--steps", str(args.steps), "--json", "-q"]
                   + [a for s in args.set for a in ("--set", s)], env),
        "torch_nchw": ([py, HERE / "bench_torch.py", *common], env),
        "torch_channels_last": ([py, HERE / "bench_torch.py", *common, "--channels-last"], env),
        "keras": ([py, HERE / "bench_keras.py", *common, "--reps", "0"], env),
        "sgemm": ([py, HERE / "sgemm_numpy.py"], blas_env),
    }
    figures = {name: {"train": [], "infer": [], "gflops": []} for name in stacks}
    cpu = "unknown"
    for r in range(args.rounds):
        for name, (cmd, e) in stacks.items():
            out = run([str(c) for c in cmd], e)
            if out is None:
                continue
            if name == "runner":
                d = json.loads(out)
                figures[name]["train"].append(d["train_images_per_second"])
                figures[name]["infer"].append(d["inference_images_per_second"])
                cpu = d.get("kernels", "")
            elif (res := result(out)) is not None:
                if "gflops" in res:
                    figures[name]["gflops"].append(float(res["gflops"]))
                else:
                    figures[name]["train"].append(float(res["train_img_s"]))
                    figures[name]["infer"].append(float(res["infer_img_s"]))
            print(f"round {r + 1}: {name} done", file=sys.stderr)

    med = {n: {k: statistics.median(v) for k, v in f.items() if v} for n, f in figures.items()}
    model = re.sub(r"\s+", " ", next((l.split(":", 1)[1] for l in Path("/proc/cpuinfo").read_text().splitlines()
                                      if l.startswith("model name")), "unknown CPU")).strip()
    print(f"{model}, {args.threads} threads, {args.rounds} interleaved rounds, medians; runner kernels: {cpu}")
    rounds = lambda v: "(rounds: " + ", ".join(f"{x:.0f}" for x in v) + ")"
    for name in stacks:
        m, f = med[name], figures[name]
        if "train" in m:
            print(f"  {name:22} train {m['train']:8.1f} img/s {rounds(f['train']):28} "
                  f"inference {m['infer']:8.1f} img/s {rounds(f['infer'])}")
        elif "gflops" in m:
            print(f"  {name:22} {m['gflops']:.1f} GFLOP/s float32 {rounds(f['gflops'])}")
    run_ = med["runner"]
    if "train" not in run_:
        raise SystemExit("runner bench failed in every round: nothing to compare")
    if "gflops" in med["sgemm"]:
        rate = run_["train"] * args.mflop / 1e3
        print(f"runner's training step: {rate:.1f} GFLOP/s = {100 * rate / med['sgemm']['gflops']:.1f}% of sgemm")
    torch = [med[n] for n in ("torch_nchw", "torch_channels_last") if "train" in med[n]]
    if torch:
        print(f"runner / PyTorch's faster layout: train {run_['train'] / max(t['train'] for t in torch):.2f}x, "
              f"inference {run_['infer'] / max(t['infer'] for t in torch):.2f}x")
    if "train" in med["keras"]:
        print(f"runner / Keras train_on_batch: {run_['train'] / med['keras']['train']:.2f}x, "
              f"predict_on_batch: {run_['infer'] / med['keras']['infer']:.2f}x")


if __name__ == "__main__":
    main()
