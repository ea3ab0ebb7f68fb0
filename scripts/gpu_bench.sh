#!/usr/bin/env bash
# The side-by-side benchmark on a GPU machine: our bench binary on XLA's CUDA PJRT plugin and HF
# transformers + PEFT, same configuration (default: the full Idefics2-8B shapes, bf16, random
# weights), same GPU, one after the other, in one command of at most 9 minutes.
#
# Prepare on the build machine (cgo, the same repository):
#     make gpu-bench-build        # -> build/gpu/idefics2-bench.gz (+ build/gpu/lib/ for its shared libs)
# Run on the GPU machine, from the repository root, with build/gpu carried along:
#     bash scripts/gpu_bench.sh                   # preflight, then the benchmark
#     bash scripts/gpu_bench.sh --preflight-only  # preflight (seconds) and the first compile only
# Rehearse the same script on a CPU machine (XLA's CPU plugin, size tiny; CI runs this):
#     bash scripts/gpu_bench.sh --rehearse        # or: make gpu-rehearse
#
# Order and budgets. A GPU lease is short, so the most valuable numbers come first: the train step
# (ours, then HF), then the forward pass, then generation. Each of these runs as its own process
# with its own time budget, so a slow compile or a hang costs only that step; a budget a step does
# not use passes on to the next (each step must end by the sum of the budgets so far), and nothing
# runs past TOTAL_BUDGET. Every step writes its JSON when it finishes; the parts are merged into
# ours-<size>.json and hf-<size>.json, and whatever was measured is printed, cut steps included.
#
# Preflight, before anything long starts, stops at the first problem with one line naming it: the
# bench binary and its libraries, nvidia-smi, the driver against the CUDA version the plugin was
# built for, `ldd` of the plugin and the CUDA libraries XLA dlopens at run time (the plugin links
# none; they come from the nvidia-* pip packages through its RPATH, each checked with `ldd` too),
# ptxas and libdevice for XLA's GPU compiler (when only triton's copy of libdevice exists it is
# linked into a data directory with a ptxas), free GPU memory, the HF stack, and then the first
# compile on the plugin (the tiny model's forward pass), which proves that XLA finds ptxas,
# libdevice and cuBLAS before the 8B graphs start compiling.
#
# Knobs (environment):
#   SIZE (8b), DTYPE (bfloat16), BATCH (1), TEXT_TOKENS (64), NEW_TOKENS (32), ITERS (5),
#   SECTIONS (train,forward,generate; always run in that order), PEAK_TFLOPS (default: the table,
#   989 for an H200 in bf16), TOTAL_BUDGET (530 s), and the step budgets in seconds:
#   BUDGET_PREFLIGHT (30), BUDGET_SMOKE (45), BUDGET_TRAIN_OURS (200), BUDGET_TRAIN_HF (75),
#   BUDGET_FORWARD_OURS (80), BUDGET_FORWARD_HF (45), BUDGET_GENERATE_OURS (75),
#   BUDGET_GENERATE_HF (70).
#   DEVICES (1): our train step data-parallel over that many GPUs (--devices; BATCH must divide
#   by it); SHARD_OPTIMIZER (0): 1 shards its masters, AdamW moments and accumulators over them. HF runs on one.
#   MEM_FRACTION (0.9): the share of GPU memory XLA's allocator may grow to (XLA's own default is
#   0.75, about 105 GiB of an H200's 141); passed as a float client option, with preallocate=false
#   so that nvidia-smi's peak is what the run used.
#   AUTOTUNE_LEVEL (unset: XLA's default, 4): --xla_gpu_autotune_level; 0 switches GEMM and fusion
#   autotuning off, which shortens compiles at the cost of kernel choice (see the README).
#   AUTOTUNE_CACHE (/tmp/idefics2-xla-autotune; "none" to switch off): XLA keeps its autotuning
#   results there, so the forward and generation steps, and a second run on the same machine,
#   do not autotune fusions the train step already did.
#   XLA_FLAGS_EXTRA (appended to XLA_FLAGS), PJRT_PLUGIN (the plugin .so; default: found in the
#   Python's site-packages), CUDA_DATA_DIR (a directory with bin/ptxas and nvvm/libdevice),
#   MIN_FREE_GIB (100 for 8b, else 2), HF_ATTN (sdpa), SMOKE (1; 0 skips the first compile),
#   LDCONFIG (the ldconfig whose cache preflight reads),
#   PYTHON (python3; in a rehearsal .venv/bin/python when it exists), BENCH_BIN, GPU_BUILD
#   (build/gpu), OUT (build/gpu-out; a rehearsal: build/gpu-rehearse).
#
# Output in $OUT: gpu_bench.log (everything printed), ours-<size>.json, hf-<size>.json and
# compare-<size>.txt (the table, the differences between the two sides, the step summary).
# Exit status: 0 all steps ran, 1 a step failed or was cut, 2 bad usage, 3 preflight stopped it.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

MODE=gpu
PREFLIGHT_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --rehearse) MODE=rehearse ;;
    --preflight-only) PREFLIGHT_ONLY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_bench: unknown argument '$arg' (use --rehearse, --preflight-only or --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
if [[ $MODE == rehearse ]]; then OUT="${OUT:-$ROOT/build/gpu-rehearse}"; else OUT="${OUT:-$ROOT/build/gpu-out}"; fi
mkdir -p "$OUT" || exit 2
LOG="$OUT/gpu_bench.log"
# Per-step logs and JSON parts stay out of $OUT: a device machine hands back only a few files.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/idefics2-gpu-bench.XXXXXX")" || exit 2
trap 'rm -rf "$WORK"' EXIT

say() { echo "gpu_bench: $*"; }
pass() { say "preflight: $1: $2"; }
# A preflight failure is one line that names the check and what to do, then the exit.
stop() { say "preflight FAILED: $1: $2"; exit 3; }

# ver_ge A B: version A ≥ version B (dotted numbers).
ver_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" == "$2" ]]; }

# The lowest Linux driver of each CUDA major version (CUDA's release notes, "minor version
# compatibility"): a plugin built for CUDA N needs at least this driver.
min_driver_for() {
  case "$1" in
    11) echo 450.80.02 ;;
    12) echo 525.60.13 ;;
    13) echo 580.65.06 ;;
    *) echo "" ;;
  esac
}

main() {
if [[ $MODE == rehearse ]]; then
  SIZE="${SIZE:-tiny}" ITERS="${ITERS:-2}" NEW_TOKENS="${NEW_TOKENS:-8}" TOTAL_BUDGET="${TOTAL_BUDGET:-240}"
  BUDGET_SMOKE="${BUDGET_SMOKE:-40}"
  BUDGET_TRAIN_OURS="${BUDGET_TRAIN_OURS:-90}" BUDGET_TRAIN_HF="${BUDGET_TRAIN_HF:-60}"
  BUDGET_FORWARD_OURS="${BUDGET_FORWARD_OURS:-40}" BUDGET_FORWARD_HF="${BUDGET_FORWARD_HF:-40}"
  BUDGET_GENERATE_OURS="${BUDGET_GENERATE_OURS:-40}" BUDGET_GENERATE_HF="${BUDGET_GENERATE_HF:-60}"
  if [[ -z "${PYTHON:-}" && -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; fi
else
  SIZE="${SIZE:-8b}" ITERS="${ITERS:-5}" NEW_TOKENS="${NEW_TOKENS:-32}" TOTAL_BUDGET="${TOTAL_BUDGET:-530}"
  BUDGET_SMOKE="${BUDGET_SMOKE:-45}"
  BUDGET_TRAIN_OURS="${BUDGET_TRAIN_OURS:-200}" BUDGET_TRAIN_HF="${BUDGET_TRAIN_HF:-75}"
  BUDGET_FORWARD_OURS="${BUDGET_FORWARD_OURS:-80}" BUDGET_FORWARD_HF="${BUDGET_FORWARD_HF:-45}"
  BUDGET_GENERATE_OURS="${BUDGET_GENERATE_OURS:-75}" BUDGET_GENERATE_HF="${BUDGET_GENERATE_HF:-70}"
fi
DTYPE="${DTYPE:-bfloat16}" BATCH="${BATCH:-1}" TEXT_TOKENS="${TEXT_TOKENS:-64}"
DEVICES="${DEVICES:-1}" SHARD_OPTIMIZER="${SHARD_OPTIMIZER:-0}"
SECTIONS="${SECTIONS:-train,forward,generate}"
BUDGET_PREFLIGHT="${BUDGET_PREFLIGHT:-30}"
MEM_FRACTION="${MEM_FRACTION:-0.9}"
AUTOTUNE_CACHE="${AUTOTUNE_CACHE:-/tmp/idefics2-xla-autotune}"
HF_ATTN="${HF_ATTN:-sdpa}"
SMOKE="${SMOKE:-1}"
PY="${PYTHON:-python3}"
GPU_BUILD="${GPU_BUILD:-$ROOT/build/gpu}"
BIN="${BENCH_BIN:-$GPU_BUILD/idefics2-bench}"
if [[ $SIZE == 8b ]]; then MIN_FREE_GIB="${MIN_FREE_GIB:-100}"; else MIN_FREE_GIB="${MIN_FREE_GIB:-2}"; fi
# The loader's cache: ldconfig is often outside an ordinary user's PATH.
LDCONFIG="${LDCONFIG:-$(command -v ldconfig || echo /sbin/ldconfig)}"
RESERVE=10     # seconds kept after the last step: the kill grace of `timeout`, the merge and the table
MIN_STEP=15    # a step with less time than this left is skipped, not started

# Bad knobs are usage errors, before any time is spent.
for v in BATCH DEVICES TEXT_TOKENS NEW_TOKENS ITERS TOTAL_BUDGET BUDGET_PREFLIGHT BUDGET_SMOKE BUDGET_TRAIN_OURS BUDGET_TRAIN_HF \
         BUDGET_FORWARD_OURS BUDGET_FORWARD_HF BUDGET_GENERATE_OURS BUDGET_GENERATE_HF MIN_FREE_GIB; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { say "$v=${!v}: want a whole number"; return 2; }
done
# PJRT checks option types: memory_fraction must arrive as a float, so it is written with a point.
if ! [[ "$MEM_FRACTION" =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]]; then
  say "MEM_FRACTION=$MEM_FRACTION: want a number in (0, 1], e.g. 0.9"; return 2
fi
[[ "$MEM_FRACTION" == *.* ]] || MEM_FRACTION="$MEM_FRACTION.0"
if [[ -n "${AUTOTUNE_LEVEL:-}" && ! "$AUTOTUNE_LEVEL" =~ ^[0-5]$ ]]; then
  say "AUTOTUNE_LEVEL=$AUTOTUNE_LEVEL: want 0 to 5 (XLA's --xla_gpu_autotune_level)"; return 2
fi
order=()
for s in train forward generate; do [[ ",$SECTIONS," == *",$s,"* ]] && order+=("$s"); done
for s in ${SECTIONS//,/ }; do
  [[ $s == train || $s == forward || $s == generate ]] || { say "SECTIONS: unknown section '$s' (train, forward, generate)"; return 2; }
done

# In a rehearsal the binary is built here when it is missing or older than the sources, before
# the clock starts: the budgets are for the run, as on the GPU machine.
if [[ $MODE == rehearse && -z "${BENCH_BIN:-}" ]]; then
  if [[ ! -f "$BIN.gz" && ! -x "$BIN" ]] || [[ -f "$BIN.gz" && -n "$(find "$ROOT" \( -path "$ROOT/.venv" -o -path "$ROOT/build" -o -path "$ROOT/.git" \) -prune \
        -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$BIN.gz" -print -quit 2>/dev/null)" ]]; then
    say "rehearsal: building the bench binary (make gpu-bench-build GPU_BUILD=$GPU_BUILD)"
    make --no-print-directory gpu-bench-build GPU_BUILD="$GPU_BUILD" >"$WORK/build.log" 2>&1 ||
      { tail -20 "$WORK/build.log"; say "rehearsal: make gpu-bench-build failed"; return 2; }
  fi
  if [[ -z "${PJRT_PLUGIN:-}" && ! -f "$ROOT/build/pjrt/pjrt_c_api_cpu_plugin.so" ]]; then
    say "rehearsal: installing XLA's CPU plugin (make pjrt-cpu)"
    make --no-print-directory pjrt-cpu >"$WORK/build.log" 2>&1 ||
      { tail -20 "$WORK/build.log"; say "rehearsal: make pjrt-cpu failed"; return 2; }
  fi
fi
SECONDS=0

say "started $(date -u +%FT%TZ) ($MODE) in $ROOT, output in $OUT"
say "run: size $SIZE, $DTYPE, batch $BATCH, $TEXT_TOKENS text tokens, $NEW_TOKENS new tokens, $ITERS iters; sections ${order[*]}; total budget ${TOTAL_BUDGET}s"
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"

# ---- preflight ----------------------------------------------------------------------------------
for tool in timeout ldd sort sed awk; do
  command -v "$tool" >/dev/null || stop "tools" "$tool is not installed"
done
command -v "$PY" >/dev/null || stop "python" "$PY not found (set PYTHON=/path/to/python3)"

# Our binary: gzipped by make gpu-bench-build to travel small.
if [[ ! -x "$BIN" && -f "$BIN.gz" ]]; then
  gunzip -c "$BIN.gz" >"$WORK/idefics2-bench" && chmod +x "$WORK/idefics2-bench" || stop "bench binary" "cannot unpack $BIN.gz"
  BIN="$WORK/idefics2-bench"
fi
[[ -x "$BIN" ]] || stop "bench binary" "$BIN(.gz) is missing: run 'make gpu-bench-build' on the build machine and carry build/gpu"
LIBDIRS=""
[[ -d "$GPU_BUILD/lib" ]] && LIBDIRS="$GPU_BUILD/lib"
missing="$(LD_LIBRARY_PATH="$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$BIN" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')"
[[ -z "$missing" ]] || stop "bench binary" "ldd $BIN finds no ${missing}(make gpu-bench-build copies them into build/gpu/lib; carry it)"
pass "bench binary" "$BIN, its libraries found"

# The Python's search path: where the jax plugin, the nvidia-* packages and triton live.
SITE_DIRS="$("$PY" - <<'EOF' 2>/dev/null
import site, sys
seen = []
for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    if d and d not in seen:
        seen.append(d)
print("\n".join(seen))
EOF
)"
[[ -n "$SITE_DIRS" ]] || stop "python" "$PY does not run"

# The CUDA PJRT plugin of the jax-cuda13-pjrt (or -cuda12-) package.
CUDA_PLUGIN="${PJRT_PLUGIN:-}"
if [[ -z "$CUDA_PLUGIN" || $MODE == rehearse ]]; then
  CUDA_PLUGIN=""
  while IFS= read -r d; do
    for sub in xla_cuda13 xla_cuda12; do
      if [[ -f "$d/jax_plugins/$sub/xla_cuda_plugin.so" ]]; then CUDA_PLUGIN="$d/jax_plugins/$sub/xla_cuda_plugin.so"; break 2; fi
    done
  done <<<"$SITE_DIRS"
fi
# The nvidia-* packages' library folders: the plugin's RUNPATH points there, and XLA also dlopens
# libraries by name at run time, which LD_LIBRARY_PATH makes as findable.
NV_LIBS=""
while IFS= read -r d; do
  for l in "$d"/nvidia/*/lib "$d"/nvidia/cu1[0-9]/lib; do
    [[ -d "$l" && ":$NV_LIBS:" != *":$l:"* ]] && NV_LIBS="${NV_LIBS:+$NV_LIBS:}$l"
  done
done <<<"$SITE_DIRS"

# bin/ptxas and nvvm/libdevice/libdevice.10.bc for XLA's GPU compiler.
DATA_DIR="" DATA_NOTE=""
find_data_dir() {
  local cands=() d
  [[ -n "${CUDA_DATA_DIR:-}" ]] && cands+=("$CUDA_DATA_DIR")
  while IFS= read -r d; do
    for sub in nvidia/cu13 nvidia/cuda_nvcc nvidia/cu12 nvidia/cuda_nvcc/cu13; do cands+=("$d/$sub"); done
  done <<<"$SITE_DIRS"
  [[ -n "${CUDA_HOME:-}" ]] && cands+=("$CUDA_HOME")
  [[ -n "${CUDA_PATH:-}" ]] && cands+=("$CUDA_PATH")
  if command -v ptxas >/dev/null; then cands+=("$(dirname "$(dirname "$(readlink -f "$(command -v ptxas)")")")"); fi
  cands+=(/usr/local/cuda /usr/local/cuda-13* /usr/local/cuda-12* /usr/lib/cuda)
  for d in "${cands[@]}"; do
    if [[ -x "$d/bin/ptxas" && -f "$d/nvvm/libdevice/libdevice.10.bc" ]]; then DATA_DIR="$d"; return 0; fi
  done
  # ptxas and libdevice in different places, e.g. libdevice only as triton's copy: join them.
  local ptxas="" libdev=""
  for d in "${cands[@]}"; do [[ -z "$ptxas" && -x "$d/bin/ptxas" ]] && ptxas="$d/bin/ptxas"; done
  [[ -z "$ptxas" ]] && ptxas="$(command -v ptxas || true)"
  for d in "${cands[@]}"; do [[ -z "$libdev" && -f "$d/nvvm/libdevice/libdevice.10.bc" ]] && libdev="$d/nvvm/libdevice/libdevice.10.bc"; done
  while IFS= read -r d; do
    [[ -z "$ptxas" && -x "$d/triton/backends/nvidia/bin/ptxas" ]] && ptxas="$d/triton/backends/nvidia/bin/ptxas"
    if [[ -z "$libdev" && -f "$d/triton/backends/nvidia/lib/libdevice.10.bc" ]]; then
      libdev="$d/triton/backends/nvidia/lib/libdevice.10.bc"; DATA_NOTE="libdevice only as triton's copy"
    fi
  done <<<"$SITE_DIRS"
  local looked=()
  for d in "${cands[@]}"; do [[ -d "$d" ]] && looked+=("$d"); done
  if [[ -z "$ptxas" ]]; then DATA_NOTE="no ptxas in ${looked[*]:-the nvidia-* packages, \$CUDA_HOME or /usr/local/cuda*}${looked[*]:+,} on PATH or in triton"; return 1; fi
  if [[ -z "$libdev" ]]; then DATA_NOTE="no nvvm/libdevice/libdevice.10.bc next to any ptxas nor in triton"; return 1; fi
  DATA_DIR="${TMPDIR:-/tmp}/idefics2-cuda-data"
  rm -rf "$DATA_DIR" && mkdir -p "$DATA_DIR/bin" "$DATA_DIR/nvvm/libdevice" || { DATA_NOTE="cannot create $DATA_DIR"; return 1; }
  ln -s "$(readlink -f "$ptxas")" "$DATA_DIR/bin/ptxas"
  ln -s "$(readlink -f "$libdev")" "$DATA_DIR/nvvm/libdevice/libdevice.10.bc"
  DATA_NOTE="${DATA_NOTE:+$DATA_NOTE; }linked $ptxas and $libdev"
}

if [[ $MODE == gpu ]]; then
  command -v nvidia-smi >/dev/null || stop "GPU" "nvidia-smi not found: no NVIDIA driver on this machine (on a CPU machine use --rehearse)"
  q="$(nvidia-smi --query-gpu=name,memory.total,memory.used,memory.free,driver_version --format=csv,noheader,nounits -i 0 2>&1)" ||
    stop "GPU" "nvidia-smi fails: $(head -1 <<<"$q")"
  IFS=, read -r gpu_name mem_total mem_used mem_free driver <<<"$q"
  gpu_name="$(echo $gpu_name)" mem_total="$(echo $mem_total)" mem_used="$(echo $mem_used)" mem_free="$(echo $mem_free)" driver="$(echo $driver)"
  drv_cuda="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -1)"
  pass "GPU" "$gpu_name, $mem_total MiB, driver $driver (CUDA ${drv_cuda:-?})"

  [[ -n "$CUDA_PLUGIN" ]] || stop "PJRT plugin" "no jax_plugins/xla_cuda13/xla_cuda_plugin.so under $PY's site-packages ($(echo $SITE_DIRS)): install jax-cuda13-pjrt or set PJRT_PLUGIN"
  [[ -f "$CUDA_PLUGIN" ]] || stop "PJRT plugin" "$CUDA_PLUGIN does not exist"
  CUDA_PLUGIN="$(readlink -f "$CUDA_PLUGIN")"
  pass "PJRT plugin" "$CUDA_PLUGIN ($("$PY" -c 'import importlib.metadata as m; print("jax-cuda13-pjrt", m.version("jax-cuda13-pjrt"))' 2>/dev/null || echo 'package version unknown'))"

  # The CUDA major version the plugin was linked against: its CUDA runtime/cuBLAS sonames, or
  # the package's directory name.
  need="$(readelf -d "$CUDA_PLUGIN" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' |
          sed -n 's/^lib\(cudart\|cublas\|cublasLt\|nvJitLink\|nvrtc\)\.so\.\([0-9][0-9]*\)$/\2/p' | sort -n | tail -1)"
  [[ -z "$need" && "$CUDA_PLUGIN" =~ xla_cuda([0-9]+)/ ]] && need="${BASH_REMATCH[1]}"
  if [[ -n "$need" ]]; then
    min="$(min_driver_for "$need")"
    if [[ -n "$drv_cuda" ]] && ! ver_ge "$drv_cuda" "$need.0"; then
      stop "driver" "driver $driver supports CUDA $drv_cuda at most, the plugin is built for CUDA $need${min:+ (needs driver ≥ $min)}"
    fi
    if [[ -n "$min" ]] && ! ver_ge "$driver" "$min"; then
      stop "driver" "driver $driver is older than $min, the least a CUDA $need plugin needs"
    fi
    pass "driver" "$driver (CUDA ${drv_cuda:-?}) runs a CUDA $need plugin${min:+ (needs ≥ $min)}"
  else
    need=13
    say "preflight: driver: WARNING: cannot tell which CUDA version the plugin needs; not checked, CUDA 13 assumed below"
  fi

  # The plugin links no CUDA library: XLA dlopens them by name at run time (jax-cuda13-pjrt
  # 0.11.2: only glibc and libstdc++ are NEEDED). dlopen searches the plugin's RPATH (the nvidia-*
  # packages next to it), LD_LIBRARY_PATH and the loader's cache, so preflight looks there too.
  PLUGIN_LD="$NV_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  missing="$(LD_LIBRARY_PATH="$PLUGIN_LD" ldd "$CUDA_PLUGIN" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')"
  [[ -z "$missing" ]] || stop "plugin libraries" "ldd finds no ${missing}for $CUDA_PLUGIN"
  pdir="$(dirname "$CUDA_PLUGIN")"
  LIB_DIRS="$(readelf -d "$CUDA_PLUGIN" 2>/dev/null | sed -n 's/.*R[UN]*PATH.*\[\(.*\)\]/\1/p' | tr ':' '\n' |
              sed "s|\\\$ORIGIN|$pdir|; s|\\\${ORIGIN}|$pdir|" | while IFS= read -r l; do realpath -m -- "$l"; done | awk '!seen[$0]++')"
  LIB_DIRS="$LIB_DIRS"$'\n'"$(tr ':' '\n' <<<"$PLUGIN_LD")"
  find_lib() {
    local d
    while IFS= read -r d; do
      [[ -n "$d" && -e "$d/$1" ]] && { readlink -f "$d/$1"; return 0; }
    done <<<"$LIB_DIRS"
    "$LDCONFIG" -p 2>/dev/null | awk -v s="$1" '$1 == s {print $NF; exit}'
  }
  case "$need" in 12) older=12 older2=11 ;; *) older=12 older2=12 ;; esac
  required=(libcuda.so.1 "libcudart.so.$need" "libcublas.so.$need" "libcublasLt.so.$need" libcudnn.so.9)
  optional=("libnvrtc.so.$need" "libnvJitLink.so.$need" "libcupti.so.$need" "libcusparse.so.$older" "libcusolver.so.$older2" "libcufft.so.$older2" libnccl.so.2)
  absent=() found=()
  for so in "${required[@]}"; do
    p="$(find_lib "$so")"
    if [[ -n "$p" ]]; then found+=("$p"); else absent+=("$so"); fi
  done
  if [[ " ${absent[*]} " == *" libcuda.so.1 "* ]]; then
    stop "CUDA libraries" "the driver's libcuda.so.1 is not in LD_LIBRARY_PATH nor the loader's cache"
  fi
  rp="$(awk 'NF' <<<"$LIB_DIRS" | grep -v -F -x -f <(tr ':' '\n' <<<"$PLUGIN_LD") | tr '\n' ' ')"
  rp="${rp% }"
  [[ ${#absent[@]} -eq 0 ]] || stop "CUDA libraries" "no ${absent[*]} in the plugin's RPATH (${rp:-none}), LD_LIBRARY_PATH or the loader's cache: XLA loads them at run time (the nvidia-* wheels for CUDA $need that jax-cuda$need-plugin depends on)"
  for p in "${found[@]}"; do
    missing="$(LD_LIBRARY_PATH="$PLUGIN_LD" ldd "$p" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')"
    [[ -z "$missing" ]] || stop "CUDA libraries" "$p needs ${missing}which is not found"
  done
  absent=()
  for so in "${optional[@]}"; do [[ -n "$(find_lib "$so")" ]] || absent+=("$so"); done
  pass "CUDA libraries" "cuBLAS $(find_lib "libcublas.so.$need"), cuDNN $(find_lib libcudnn.so.9), driver $(find_lib libcuda.so.1)"
  [[ ${#absent[@]} -eq 0 ]] || say "preflight: CUDA libraries: WARNING: not found: ${absent[*]} (XLA loads these only for features these graphs should not need)"

  find_data_dir || stop "ptxas/libdevice" "$DATA_NOTE (install the pip packages nvidia-cuda-nvcc and nvidia-nvvm for CUDA $need, or set CUDA_DATA_DIR to a directory with bin/ptxas and nvvm/libdevice)"
  pv="$("$DATA_DIR/bin/ptxas" --version 2>&1)" || stop "ptxas/libdevice" "$DATA_DIR/bin/ptxas does not run: $(tail -1 <<<"$pv")"
  pv="$(sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' <<<"$pv" | head -1)"
  pass "ptxas/libdevice" "$DATA_DIR (ptxas ${pv:-?}${DATA_NOTE:+; $DATA_NOTE})"
  if [[ -n "$need" && -n "$pv" && "${pv%%.*}" -lt "$need" ]]; then
    say "preflight: ptxas/libdevice: WARNING: ptxas $pv is older than the plugin's CUDA $need"
  fi

  free_gib=$(( mem_free / 1024 ))
  if (( free_gib < MIN_FREE_GIB )); then
    apps="$(nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2>/dev/null | tr '\n' ';')"
    stop "GPU memory" "only $free_gib GiB free of $(( mem_total / 1024 )) (need $MIN_FREE_GIB for size $SIZE)${apps:+; in use by: $apps}"
  fi
  pass "GPU memory" "$free_gib GiB free of $(( mem_total / 1024 ))"
  PLUGIN="$CUDA_PLUGIN"
  CLIENT_OPTS="preallocate=false,memory_fraction=$MEM_FRACTION"
  HF_DEVICE=cuda
else
  # A rehearsal walks the same discovery; what it finds for CUDA is reported, not required.
  pass "GPU" "none needed (rehearsal on the CPU; scripts/gpu_bench_test.sh drives the CUDA checks on fake trees)"
  if [[ -n "$CUDA_PLUGIN" ]]; then pass "CUDA plugin" "found $CUDA_PLUGIN (not used in a rehearsal)"
  else pass "CUDA plugin" "none under $PY's site-packages, as expected here"; fi
  if find_data_dir; then pass "ptxas/libdevice" "$DATA_DIR${DATA_NOTE:+ ($DATA_NOTE)} (not used in a rehearsal)"
  else pass "ptxas/libdevice" "none here ($DATA_NOTE), as expected on a CPU machine"; DATA_DIR=""; fi
  PLUGIN="${PJRT_PLUGIN:-$ROOT/build/pjrt/pjrt_c_api_cpu_plugin.so}"
  [[ -f "$PLUGIN" ]] || stop "PJRT plugin" "no XLA CPU plugin at $PLUGIN (make pjrt-cpu)"
  PLUGIN="$(readlink -f "$PLUGIN")"
  missing="$(ldd "$PLUGIN" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')"
  [[ -z "$missing" ]] || stop "plugin libraries" "ldd finds no ${missing}for $PLUGIN"
  pass "PJRT plugin" "$PLUGIN (XLA's CPU plugin), its libraries found"
  avail_gib=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1048576 ))
  (( avail_gib >= MIN_FREE_GIB )) || stop "memory" "only $avail_gib GiB of host memory available (need $MIN_FREE_GIB)"
  pass "memory" "$avail_gib GiB of host memory available"
  # The CPU plugin refuses the GPU's options by name; an integer option written as 1 rehearses
  # the typing of client options instead.
  CLIENT_OPTS="cpu_device_count=1"
  HF_DEVICE=cpu
fi

# XLA_FLAGS: the same on both kinds of machine, so a rehearsal proves that this XLA version knows
# every flag (the CPU plugin is built from the same XLA release as jax-cuda13-pjrt 0.11.2, and an
# unknown flag aborts the process at start).
flags="${XLA_FLAGS:-}"
if [[ -n "$DATA_DIR" && "$flags" != *--xla_gpu_cuda_data_dir* ]]; then flags+=" --xla_gpu_cuda_data_dir=$DATA_DIR"; fi
if [[ "$AUTOTUNE_CACHE" != none ]]; then
  mkdir -p "$AUTOTUNE_CACHE" 2>/dev/null || stop "XLA flags" "cannot create AUTOTUNE_CACHE=$AUTOTUNE_CACHE (set AUTOTUNE_CACHE=none to go without)"
  flags+=" --xla_gpu_per_fusion_autotune_cache_dir=$AUTOTUNE_CACHE"
fi
[[ -n "${AUTOTUNE_LEVEL:-}" ]] && flags+=" --xla_gpu_autotune_level=$AUTOTUNE_LEVEL"
flags+=" ${XLA_FLAGS_EXTRA:-}"
export XLA_FLAGS="$(echo $flags)"
# We set the data directory ourselves; go-xla's own guess is a path of its author's machine.
export GOPJRT_CUDA_CHECKS=0 GOMLX_NO_AUTO_INSTALL=1
export GOMLX_BACKEND="xla:$PLUGIN,$CLIENT_OPTS"
pass "XLA flags" "XLA_FLAGS=$XLA_FLAGS"
pass "backend" "GOMLX_BACKEND=$GOMLX_BACKEND"
OURS_LD="$LIBDIRS${NV_LIBS:+${LIBDIRS:+:}$NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The HF stack: its absence skips the HF steps (with a line saying so), it does not stop ours.
HF_SKIP=""
hf="$("$PY" - "$HF_DEVICE" <<'EOF' 2>&1
import sys
try:
    import torch, transformers, peft
except Exception as e:
    print(f"SKIP no torch/transformers/peft in {sys.executable} ({type(e).__name__}: {e})")
    sys.exit(0)
v = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        print(f"SKIP torch sees no GPU ({v}, built for CUDA {torch.version.cuda})")
        sys.exit(0)
    v += f", CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"
print("OK " + v)
EOF
)"
case "$hf" in
  OK*) pass "HF stack" "${hf#OK }" ;;
  SKIP*) HF_SKIP="${hf#SKIP }"; say "preflight: HF stack: the HF steps will be skipped: $HF_SKIP" ;;
  *) HF_SKIP="$PY failed: $(tail -1 <<<"$hf")"; say "preflight: HF stack: the HF steps will be skipped: $HF_SKIP" ;;
esac

peak_flag=()
[[ -n "${PEAK_TFLOPS:-}" ]] && peak_flag=(--peak-tflops "$PEAK_TFLOPS")
dp_flags=(--devices "$DEVICES")
[[ "$SHARD_OPTIMIZER" == 1 ]] && dp_flags+=(--shard-optimizer)
common=(--size "$SIZE" --dtype "$DTYPE" --batch "$BATCH" --text-tokens "$TEXT_TOKENS"
        --new-tokens "$NEW_TOKENS" --iters "$ITERS" "${peak_flag[@]}")

# ---- steps --------------------------------------------------------------------------------------
# Each step must end by the sum of the budgets up to and including it (capped by the total), so
# what one step leaves unused goes to the next.
PLAN=0
STATUS=()   # "impl<TAB>section<TAB>status" per step
n_ok=0 n_bad=0 n_skip=0
record() { STATUS+=("$1"$'\t'"$2"$'\t'"$3"); say "$1 $2: $3"; }
# The last error-looking line of a log, its middle cut when long: the start names the step, the
# end the cause.
last_error() {
  local l
  l="$(grep -E -i 'error|panic|fatal|F0000|Traceback|Killed|out of memory|RESOURCE_EXHAUSTED' "$1" | grep -v -i 'no error' | tail -1)"
  if (( ${#l} > 300 )); then l="${l:0:120} … ${l: -170}"; fi
  echo "$l"
}

# run_step IMPL SECTION BUDGET LOG CMD...: runs CMD under the step's limit, output to LOG and here.
run_step() {
  local impl=$1 section=$2 budget=$3 log=$4
  shift 4
  PLAN=$(( PLAN + budget ))
  local end=$(( PLAN < TOTAL_BUDGET - RESERVE ? PLAN : TOTAL_BUDGET - RESERVE ))
  local limit=$(( end - SECONDS ))
  if (( limit < MIN_STEP )); then
    record "$impl" "$section" "skipped: no time left (${limit}s before its deadline at ${end}s)"
    n_skip=$(( n_skip + 1 )); return 125
  fi
  say "$impl $section: started at ${SECONDS}s, limit ${limit}s (budget ${budget}s)"
  local t=$SECONDS
  timeout --signal=TERM --kill-after=5 "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} took=$(( SECONDS - t ))
  case $rc in
    0) record "$impl" "$section" "ok in ${took}s (limit ${limit}s)"; n_ok=$(( n_ok + 1 )) ;;
    124 | 137) record "$impl" "$section" "cut at its ${limit}s limit"; n_bad=$(( n_bad + 1 )) ;;
    *) record "$impl" "$section" "failed (exit $rc after ${took}s): $(last_error "$log")"; n_bad=$(( n_bad + 1 )) ;;
  esac
  return "$rc"
}

# Preflight's time counts against its own budget.
PLAN=$BUDGET_PREFLIGHT
say "preflight done in ${SECONDS}s"

OURS=(env LD_LIBRARY_PATH="$OURS_LD" "$BIN")

# The first compile on the plugin: the tiny model's forward pass.
if [[ $SMOKE == 1 ]]; then
  run_step ours first-compile "$BUDGET_SMOKE" "$WORK/ours-smoke.log" \
    "${OURS[@]}" --size tiny --dtype "$DTYPE" --sections forward --iters 1 --out "$WORK/smoke.json"
  rc=$?
  if (( rc != 0 && rc != 124 && rc != 137 && rc != 125 )) && grep -q 'PJRT_Client_Create' "$WORK/ours-smoke.log"; then
    say "WARNING: the plugin refused the client options ($CLIENT_OPTS); again without them"
    export GOMLX_BACKEND="xla:$PLUGIN"
    STATUS[${#STATUS[@]}-1]="ours"$'\t'"first-compile"$'\t'"the plugin refused the client options $CLIENT_OPTS: retried without them"
    n_bad=$(( n_bad - 1 )); PLAN=$(( PLAN - BUDGET_SMOKE ))
    run_step ours first-compile "$BUDGET_SMOKE" "$WORK/ours-smoke.log" \
      "${OURS[@]}" --size tiny --dtype "$DTYPE" --sections forward --iters 1 --out "$WORK/smoke.json"
    rc=$?
  fi
  (( rc == 0 )) || stop "first compile" "the tiny forward pass on $PLUGIN did not run: $(last_error "$WORK/ours-smoke.log" || true) (log above)"
  pass "first compile" "the plugin compiles and runs"
fi
if [[ $PREFLIGHT_ONLY == 1 ]]; then
  say "preflight passed in ${SECONDS}s (--preflight-only)"
  return 0
fi

for s in "${order[@]}"; do
  ob="BUDGET_${s^^}_OURS" hb="BUDGET_${s^^}_HF"
  run_step ours "$s" "${!ob}" "$WORK/ours-$s.log" "${OURS[@]}" "${common[@]}" "${dp_flags[@]}" --sections "$s" --out "$WORK/ours-$s.json"
  if [[ -n "$HF_SKIP" ]]; then
    PLAN=$(( PLAN + ${!hb} ))
    record hf "$s" "skipped: no HF stack (see preflight)"; n_skip=$(( n_skip + 1 ))
  else
    [[ $HF_DEVICE == cuda ]] && wait_gpu_free
    run_step hf "$s" "${!hb}" "$WORK/hf-$s.log" env PYTHONUNBUFFERED=1 "$PY" scripts/bench_hf.py "${common[@]}" \
      --device "$HF_DEVICE" --attn "$HF_ATTN" --sections "$s" --out "$WORK/hf-$s.json"
  fi
  [[ $HF_DEVICE == cuda ]] && wait_gpu_free
done

# ---- results ------------------------------------------------------------------------------------
printf '%s\n' "${STATUS[@]}" >"$WORK/status.tsv"
rm -f "$OUT/ours-$SIZE.json" "$OUT/hf-$SIZE.json" "$OUT/compare-$SIZE.txt"
for impl in ours hf; do
  python3 - "$impl" "$WORK" "$OUT/$impl-$SIZE.json" "$MODE" "$XLA_FLAGS" "$GOMLX_BACKEND" <<'EOF' || say "$impl: could not merge its JSON parts"
import json, os, sys
impl, work, out, mode, xla_flags, backend = sys.argv[1:7]
status = {}
for line in open(os.path.join(work, "status.tsv")):
    i, s, st = line.rstrip("\n").split("\t", 2)
    if i == impl:
        status[s] = st
res = None
for s in ("train", "forward", "generate"):
    path = os.path.join(work, f"{impl}-{s}.json")
    part = json.load(open(path)) if os.path.exists(path) else None
    if part is not None and res is None:
        res = part
    elif part is not None:
        if part.get(s) is not None:
            res[s] = part[s]
        res.setdefault("versions", {}).update(part.get("versions") or {})
for s in ("train", "forward", "generate"):
    if res is not None and s in status and res.get(s) is None:
        res[s] = {"skipped": status[s]}
if res is None:
    sys.exit(0)
if impl == "ours":
    res.setdefault("notes", []).extend([
        "scripts/gpu_bench.sh ran each section in its own process, with fresh random weights and its own time budget",
        f"XLA_FLAGS={xla_flags}",
        f"GOMLX_BACKEND={backend}",
    ])
with open(out, "w") as f:
    f.write(json.dumps(res, indent=2) + "\n")
EOF
done

{
  o="$OUT/ours-$SIZE.json" h="$OUT/hf-$SIZE.json"
  if [[ -f "$o" && -f "$h" ]]; then "${OURS[@]}" -compare "$o,$h"
  elif [[ -f "$o" ]]; then say "no HF results: ours alone"; "${OURS[@]}" -compare "$o"
  elif [[ -f "$h" ]]; then say "no results of ours: HF alone"; "${OURS[@]}" -compare "$h"
  else say "no results on either side"
  fi
  if [[ -f "$o" ]]; then
    python3 - "$o" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("train") or {}
if t and not t.get("skipped"):
    measured = t.get("device_peak_mib")
    compiled = t.get("device_peak_bytes")
    if measured:
        line = f"  ours train device memory: measured peak {measured:.0f} MiB (nvidia-smi)"
    else:
        line = f"  ours train memory: no device peak here, host peak {t.get('host_peak_mib', 0):.0f} MiB"
    line += f", compiled peak {compiled / 2**20:.0f} MiB (XLA's buffer assignment)" if compiled else "; compiled peak not in this binary's JSON"
    print(line)
    for g in t.get("graphs") or []:
        if isinstance(g, dict):
            name = g.get("name") or g.get("graph") or "?"
            rest = ", ".join(f"{k} {v}" for k, v in g.items() if k not in ("name", "graph") and not isinstance(v, (dict, list)))
            print(f"  ours train graph {name}: {rest}")
EOF
  fi
  echo "  steps (budget order: train, forward, generate; total ${TOTAL_BUDGET}s):"
  for l in "${STATUS[@]}"; do IFS=$'\t' read -r i s st <<<"$l"; printf '    %-5s %-13s %s\n' "$i" "$s" "$st"; done
} | tee "$OUT/compare-$SIZE.txt"

say "done in ${SECONDS}s ($MODE; output in $OUT)"
# A closing line test runners' summaries use, so CI can read the rehearsal's outcome.
echo "steps: $n_ok passed, $n_bad failed, $n_skip skipped"
(( n_bad == 0 )) || return 1
return 0
}

# After each step on the GPU: wait (10 s at most) until no process holds GPU memory, so that the
# next step's peak is its own.
wait_gpu_free() {
  local i
  for i in $(seq 20); do
    [[ -z "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ]] && return 0
    sleep 0.5
  done
  say "WARNING: GPU memory still held after 10 s: $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null | tr '\n' ' ')"
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
