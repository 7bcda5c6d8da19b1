#!/usr/bin/env bash
# One-command device check for a runner built with CUDA, on a GPU machine with nothing else
# installed (no Rust, no network): only the binary, this repository, and a system Python whose
# site-packages hold PyTorch and the CUDA libraries as wheels (nvidia/*/lib).
#
#   1. ops:      `runner gpu-check`: every op the networks use, forward and backward, on the
#                GPU against the CPU on seeded random inputs, each output against its stated
#                tolerance.
#   2. accuracy: experiments/baseline.toml for 3 epochs on the GPU and on the CPU; the final
#                val_accuracy must agree within 1 point.
#   3. speed:    `runner bench experiments/cats_vs_dogs.toml` on the GPU at batch 32 and 256,
#                next to PyTorch on the same GPU (benches/reference/bench_torch.py).
#
# Each part reports PASS or FAIL and the script goes on to the next; a summary closes the run,
# and the exit status is 1 when any part failed (2 for a wrong command line). The whole run is
# bounded by --time-limit (default 290 s): every command gets the time left, and a backstop
# `timeout` ends the script itself shortly after. Everything printed also goes to
# <results>/gpu-check.log; the run folders, tables and raw outputs stay in <results>.
#
# `--device cpu` runs every part on the CPU instead (the CPU against itself): a dry run of the
# script's plumbing on a machine without a GPU, which says nothing about a GPU.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/gpu-check.sh [options]

  --runner PATH      the runner binary (default: target/cuda/release/runner, what
                     scripts/build-cuda.sh builds)
  --python PATH      the Python with PyTorch and the nvidia-* wheels (default: python3)
  --device DEV       cuda, cuda:N, or cpu for a dry run of the plumbing (default: cuda:0)
  --results DIR      where the log and outputs go (default: results/gpu-check/<UTC time>)
  --time-limit SECS  the whole run's time budget (default: 290)
  --steps N          timed steps per figure of part 3 (default: 10)
  -h, --help         this text

Exit status: 0 when all three parts pass, 1 when one fails, 2 for a wrong command line.
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNNER=target/cuda/release/runner
PYTHON=python3
DEVICE=cuda:0
RESULTS=
TIME_LIMIT=290
STEPS=10
ARGS=("$@")
while (($#)); do
    case $1 in
        --runner) RUNNER=${2:?--runner needs a path}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --device) DEVICE=${2:?--device needs cuda, cuda:N or cpu}; shift 2 ;;
        --results) RESULTS=${2:?--results needs a folder}; shift 2 ;;
        --time-limit) TIME_LIMIT=${2:?--time-limit needs seconds}; shift 2 ;;
        --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu-check.sh: unknown option \`$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case $DEVICE in
    cpu) TORCH_DEVICE=cpu ;;
    cuda) DEVICE=cuda:0; TORCH_DEVICE=cuda:0 ;;
    cuda:[0-9]*) TORCH_DEVICE=$DEVICE ;;
    *) echo "gpu-check.sh: --device $DEVICE: use cuda, cuda:N or cpu" >&2; exit 2 ;;
esac
if ! [[ $TIME_LIMIT =~ ^[0-9]+$ && $STEPS =~ ^[0-9]+$ ]] || ((TIME_LIMIT < 30 || STEPS < 1)); then
    echo "gpu-check.sh: --time-limit takes whole seconds (30 or more), --steps a count (1 or more)" >&2
    exit 2
fi

# The backstop: the script runs again under `timeout`, a little past its own budget, so that a
# hang outside the commands' own limits still ends it.
if [[ -z ${GPU_CHECK_GUARDED:-} ]]; then
    export GPU_CHECK_GUARDED=1
    exec timeout --kill-after=10 "$((TIME_LIMIT + 20))" bash "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

cd "$ROOT"
[[ $RUNNER = /* ]] || RUNNER=$ROOT/$RUNNER
RESULTS=${RESULTS:-results/gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
LOG=$RESULTS/gpu-check.log
exec > >(tee -a "$LOG") 2>&1

START=$SECONDS
DEADLINE=$((START + TIME_LIMIT))

say() { printf '%s\n' "$*"; }
rule() { printf '\n== %s ==\n' "$*"; }

# Seconds a command may take now: at most $1, and never past the deadline (less 5 s for the
# summary); 0 when no time is left.
budget() {
    local left=$((DEADLINE - SECONDS - 5))
    ((left < 0)) && left=0
    ((left < $1)) && echo "$left" || echo "$1"
}

# `limited CAP command...`: runs the command under `timeout` with budget CAP; its exit status,
# 124 when it ran out of time (a message says so), 125 when no time was left to start it.
limited() {
    local cap
    cap=$(budget "$1")
    shift
    if ((cap <= 0)); then
        say "no time left to run: $*"
        return 125
    fi
    local rc=0
    timeout --kill-after=5 "$cap" "$@" || rc=$?
    ((rc == 124 || rc == 137)) && say "timed out after ${cap}s: $*"
    return "$rc"
}

# `part N TITLE FUNCTION`: runs FUNCTION in a subshell with errexit, so that a failing command
# ends that part, not the script. The function writes its one-line verdict to $VERDICT; the
# part passes when the function returns 0.
STATUS=()
SUMMARY=()
part() {
    local n=$1 title=$2 fn=$3 rc=0
    rule "part $n: $title"
    VERDICT=$RESULTS/part$n.verdict
    : >"$VERDICT"
    set +e
    (
        set -e
        "$fn"
    )
    rc=$?
    set -e
    local verdict
    verdict=$(cat "$VERDICT")
    [[ -n $verdict ]] || verdict="stopped with exit status $rc"
    if ((rc == 0)); then
        STATUS+=(PASS)
    else
        STATUS+=(FAIL)
    fi
    SUMMARY+=("$(printf 'part %s %-34s %s: %s' "$n" "$title" "${STATUS[-1]}" "$verdict")")
    say "part $n: ${STATUS[-1]}: $verdict"
}

verdict() { printf '%s\n' "$*" >"$VERDICT"; }

# The lib folders of the CUDA wheels in the Python's site-packages (nvidia/*/lib, such as
# nvidia/cu13/lib, nvidia/cudnn/lib), which the binary opens at run time.
cuda_wheel_libs() {
    "$PYTHON" - <<'EOF'
import glob, os, site, sys
roots = []
for getter in (site.getsitepackages, lambda: [site.getusersitepackages()]):
    try:
        roots += getter()
    except Exception:
        pass
roots += [p for p in sys.path if p.endswith("-packages")]
found = []
for root in roots:
    for pattern in ("nvidia/*/lib", "nvidia/*/lib64", "nvidia/*/*/lib"):
        for d in sorted(glob.glob(os.path.join(root, pattern))):
            d = os.path.realpath(d)
            if d not in found and glob.glob(os.path.join(d, "*.so*")):
                found.append(d)
print(":".join(found))
EOF
}

# ---------------------------------------------------------------------------------------------

rule "gpu-check.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), device $DEVICE, budget ${TIME_LIMIT}s"
say "results: $RESULTS"
say "runner:  $RUNNER"
if [[ -x $RUNNER ]]; then
    say "         $("$RUNNER" --version 2>&1 || true)"
else
    say "         missing or not executable: build it with scripts/build-cuda.sh (or give --runner)"
fi
say "python:  $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])' 2>&1 || echo "$PYTHON: not usable")"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu:     /' || true
else
    say "gpu:     no nvidia-smi on PATH"
fi
LIBS=$(cuda_wheel_libs 2>/dev/null || true)
if [[ -n $LIBS ]]; then
    export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    say "CUDA libraries from the wheels (put first on LD_LIBRARY_PATH):"
    tr ':' '\n' <<<"$LIBS" | sed 's/^/         /'
    for lib in libcublas.so libcublasLt.so libnvrtc.so libcudnn.so libcurand.so; do
        hit=$(for d in ${LIBS//:/ }; do compgen -G "$d/$lib*" || true; done | head -n 1) || true
        say "         $lib: ${hit:-not found in the wheels}"
    done
else
    say "CUDA libraries: no nvidia/*/lib folder in $PYTHON's site-packages; LD_LIBRARY_PATH left as it is"
fi
export RUNNER_CACHE_DIR=$RESULTS/image-cache
[[ $DEVICE = cpu ]] && say "dry run: every part runs on the CPU against the CPU, which says nothing about a GPU"

have_runner() {
    if [[ ! -x $RUNNER ]]; then
        verdict "no runner binary at $RUNNER (scripts/build-cuda.sh builds it there)"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Part 1: every op on the device against the CPU.

ops() {
    have_runner
    local rc=0
    limited 90 "$RUNNER" gpu-check --device "$DEVICE" --seed 1 | tee "$RESULTS/ops.txt" || rc=${PIPESTATUS[0]}
    case $rc in
        0) verdict "$(tail -n 1 "$RESULTS/ops.txt")" ;;
        1) verdict "$(grep -c ' FAIL$' "$RESULTS/ops.txt" || true) outputs beyond their tolerance (FAIL rows above)" ;;
        69 | 78) verdict "no usable GPU, or no CUDA in this binary (message above)" ;;
        124 | 125 | 137) verdict "out of time" ;;
        *) verdict "runner gpu-check stopped with exit status $rc" ;;
    esac
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Part 2: a 3-epoch baseline on the device and on the CPU.

# `train DEVICE TAG`: trains the baseline for 3 epochs on DEVICE into $RESULTS/baseline-TAG.
train() {
    local device=$1 dir=$RESULTS/baseline-$2 started=$SECONDS rc=0
    say "training experiments/baseline.toml for 3 epochs on $device into $dir"
    limited 120 "$RUNNER" experiments/baseline.toml --set train.epochs=3 --set "experiment.device=$device" \
        --set "output.dir=\"$dir\"" || rc=$?
    say "  $((SECONDS - started))s, exit status $rc"
    return "$rc"
}

accuracy() {
    have_runner
    local tested=gpu
    [[ $DEVICE = cpu ]] && tested=cpu-again
    # The device first: when it fails, the CPU run is not needed.
    if ! train "$DEVICE" "$tested"; then
        verdict "the run on $DEVICE failed (above)"
        return 1
    fi
    if ! train cpu cpu; then
        verdict "the CPU run failed (above)"
        return 1
    fi
    local line
    if ! line=$("$PYTHON" - "$RESULTS/baseline-cpu" "$RESULTS/baseline-$tested" <<'EOF'
import glob, json, os, sys
rows = []
for folder in sys.argv[1:]:
    runs = sorted(glob.glob(os.path.join(folder, "baseline", "run-*", "history.json")))
    if not runs:
        sys.exit(f"no history.json under {folder}")
    history = json.load(open(runs[-1]))
    manifest = json.load(open(os.path.join(os.path.dirname(runs[-1]), "manifest.json")))
    rows.append((manifest.get("device", "?"), len(history["val_accuracy"]), history["val_accuracy"][-1]))
    print(f"  {manifest.get('device', '?'):<8} {len(history['val_accuracy'])} epochs  "
          f"val_accuracy {history['val_accuracy'][-1]:.4f}  val_loss {history['val_loss'][-1]:.4f}  ({runs[-1]})",
          file=sys.stderr)
(_, _, cpu), (device, epochs, tested) = rows
diff = abs(tested - cpu) * 100
verdict = "PASS" if diff <= 1.0 and epochs == 3 else "FAIL"
epochs_note = "" if epochs == 3 else f" (but {epochs} epochs on {device}, not 3)"
print(f"{verdict} val_accuracy {device} {tested:.4f}, cpu {cpu:.4f}: {diff:.2f} points apart (at most 1){epochs_note}")
EOF
    ); then
        verdict "could not read the runs' histories (above)"
        return 1
    fi
    say "$line"
    verdict "${line#* }"
    [[ $line = PASS* ]]
}

# ---------------------------------------------------------------------------------------------
# Part 3: runner bench next to PyTorch on the same device.

speed() {
    have_runner
    local batch rc failed=0
    for batch in 32 256; do
        say "runner bench experiments/cats_vs_dogs.toml on $DEVICE, batch $batch, $STEPS steps"
        rc=0
        limited 90 "$RUNNER" -q bench experiments/cats_vs_dogs.toml --set "experiment.device=$DEVICE" \
            --batch "$batch" --steps "$STEPS" --json >"$RESULTS/bench-runner-$batch.json" || rc=$?
        cat "$RESULTS/bench-runner-$batch.json"
        ((rc == 0)) || { say "  runner bench failed (exit status $rc)"; failed=1; }
        # float32 on both sides: PyTorch's default lets cuDNN convolutions use TF32.
        say "PyTorch on $TORCH_DEVICE, batch $batch, $STEPS steps (float32, no TF32)"
        rc=0
        limited 90 "$PYTHON" benches/reference/bench_torch.py --device "$TORCH_DEVICE" --no-tf32 --batch "$batch" \
            --steps "$STEPS" --warmup 3 >"$RESULTS/bench-torch-$batch.txt" || rc=$?
        cat "$RESULTS/bench-torch-$batch.txt"
        ((rc == 0)) || { say "  bench_torch.py failed (exit status $rc)"; failed=1; }
    done
    "$PYTHON" - "$RESULTS" "$DEVICE" <<'EOF' | tee "$RESULTS/bench.txt"
import json, os, sys
results, device = sys.argv[1:]
def runner(batch):
    try:
        t = json.load(open(os.path.join(results, f"bench-runner-{batch}.json")))
        return t["train_images_per_second"], t["inference_images_per_second"]
    except Exception:
        return None
def torch(batch):
    try:
        for line in open(os.path.join(results, f"bench-torch-{batch}.txt")):
            if line.startswith("RESULT "):
                kv = dict(p.split("=", 1) for p in line.split()[1:])
                return float(kv["train_img_s"]), float(kv["infer_img_s"])
    except Exception:
        pass
    return None
def cell(v):
    return f"{v:>10.1f}" if v is not None else f"{'-':>10}"
def ratio(a, b):
    return f"{a / b:>7.2f}x" if a is not None and b else f"{'-':>8}"
print(f"images/s on {device} (median of the timed steps); ratio = runner / PyTorch")
print(f"{'batch':>5}  {'':<8} {'runner':>10} {'PyTorch':>10} {'ratio':>8}")
for batch in (32, 256):
    r, t = runner(batch), torch(batch)
    for i, kind in enumerate(("train", "infer")):
        a, b = (r[i] if r else None), (t[i] if t else None)
        print(f"{batch:>5}  {kind:<8} {cell(a)} {cell(b)} {ratio(a, b)}")
EOF
    if ((failed)); then
        verdict "a benchmark did not run (above); the table shows what did"
        return 1
    fi
    verdict "runner and PyTorch measured at batch 32 and 256 (table above, $RESULTS/bench.txt)"
}

part 1 "ops on $DEVICE against the CPU" ops
part 2 "baseline accuracy, $DEVICE vs cpu" accuracy
part 3 "bench on $DEVICE vs PyTorch" speed

rule "summary ($((SECONDS - START))s of ${TIME_LIMIT}s)"
printf '%s\n' "${SUMMARY[@]}"
say "log: $LOG"
failed=0
for s in "${STATUS[@]}"; do [[ $s = PASS ]] || failed=$((failed + 1)); done
if ((failed)); then
    say "$failed of ${#STATUS[@]} parts FAILED"
    exit 1
fi
say "all ${#STATUS[@]} parts passed"
