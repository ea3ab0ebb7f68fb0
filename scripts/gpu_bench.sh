#!/usr/bin/env bash
# The side-by-side benchmark on a GPU machine: our bench binary on XLA's CUDA PJRT plugin and HF
# transformers + PEFT, same configuration (default: the full Idefics2-8B shapes, bf16, random
# weights), same GPU, one after the other. Both JSONs, the comparison table and a log go to $OUT
# (default build/gpu-out).
#
# Prepare on the build machine (cgo, the same repository):
#     make gpu-bench-build        # -> build/gpu/idefics2-bench.gz (+ build/gpu/lib/ for its shared libs)
# Run on the GPU machine, from the repository root, with build/gpu carried along:
#     bash scripts/gpu_bench.sh
#
# Requirements there: python3 with torch, transformers, peft and the jax-cuda13-pjrt package
# (site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so, found automatically; or set
# PJRT_PLUGIN=/abs/path.so), nvidia-smi, and a CUDA data directory with bin/ptxas and
# nvvm/libdevice (searched in the nvidia-* pip packages, $CUDA_HOME, the ptxas on $PATH and
# /usr/local/cuda*; or set CUDA_DATA_DIR).
#
# Knobs (environment): SIZE (8b), DTYPE (bfloat16), BATCH (1), TEXT_TOKENS (64), NEW_TOKENS (32),
# ITERS (5), SECTIONS (forward,generate,train), OURS_TIMEOUT (330 s), HF_TIMEOUT (210 s),
# XLA_FLAGS_EXTRA (appended to XLA_FLAGS), PEAK_TFLOPS (default: the table, 989 for an H200 bf16).
# Each side runs under its own time limit and rewrites its JSON after every section, so a slow
# compile costs only the sections after it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build/gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"

main() {

SIZE="${SIZE:-8b}"
DTYPE="${DTYPE:-bfloat16}"
BATCH="${BATCH:-1}"
TEXT_TOKENS="${TEXT_TOKENS:-64}"
NEW_TOKENS="${NEW_TOKENS:-32}"
ITERS="${ITERS:-5}"
SECTIONS="${SECTIONS:-forward,generate,train}"
OURS_TIMEOUT="${OURS_TIMEOUT:-330}"
HF_TIMEOUT="${HF_TIMEOUT:-210}"
PY="${PYTHON:-python3}"
BIN="${BENCH_BIN:-$ROOT/build/gpu/idefics2-bench}"

say() { echo "gpu_bench: $*"; }
t_start=$(date +%s)

say "started $(date -u +%FT%TZ) in $ROOT, output in $OUT"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader | sed 's/^/gpu_bench: GPU: /'
else
  say "WARNING: nvidia-smi not found"
fi
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"

# --- our binary ---------------------------------------------------------------------------------
if [[ ! -x "$BIN" && -f "$BIN.gz" ]]; then
  gunzip -c "$BIN.gz" > /tmp/idefics2-bench && chmod +x /tmp/idefics2-bench
  BIN=/tmp/idefics2-bench
fi
if [[ ! -x "$BIN" ]]; then
  say "ERROR: $BIN(.gz) is missing: run 'make gpu-bench-build' on the build machine and carry build/gpu"
  exit 2
fi
if [[ -d "$ROOT/build/gpu/lib" ]]; then
  export LD_LIBRARY_PATH="$ROOT/build/gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
missing_libs="$(ldd "$BIN" 2>&1 | grep 'not found' || true)"
if [[ -n "$missing_libs" ]]; then
  say "ERROR: $BIN lacks shared libraries here:"; echo "$missing_libs"
  exit 2
fi

# --- the CUDA PJRT plugin from the jax-cuda13-pjrt package -------------------------------------
SITE_DIRS="$("$PY" - <<'EOF'
import site, sys
seen = []
for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    if d and d not in seen:
        seen.append(d)
print("\n".join(seen))
EOF
)"
PLUGIN="${PJRT_PLUGIN:-}"
if [[ -z "$PLUGIN" ]]; then
  while IFS= read -r d; do
    for sub in xla_cuda13 xla_cuda12; do
      if [[ -f "$d/jax_plugins/$sub/xla_cuda_plugin.so" ]]; then PLUGIN="$d/jax_plugins/$sub/xla_cuda_plugin.so"; break 2; fi
    done
  done <<<"$SITE_DIRS"
fi
if [[ -z "$PLUGIN" || ! -f "$PLUGIN" ]]; then
  say "ERROR: no xla_cuda_plugin.so (jax-cuda13-pjrt) under: $(echo $SITE_DIRS)"; exit 2
fi
PLUGIN="$(readlink -f "$PLUGIN")"
say "PJRT plugin: $PLUGIN ($("$PY" -c 'import importlib.metadata as m; print("jax-cuda13-pjrt", m.version("jax-cuda13-pjrt"))' 2>/dev/null || echo 'version unknown'))"

# --- CUDA data dir: bin/ptxas + nvvm/libdevice -------------------------------------------------
is_data_dir() { [[ -x "$1/bin/ptxas" && -d "$1/nvvm/libdevice" ]]; }
DATA_DIR="${CUDA_DATA_DIR:-}"
if [[ -z "$DATA_DIR" ]]; then
  cands=()
  while IFS= read -r d; do
    for sub in nvidia/cu13 nvidia/cuda_nvcc nvidia/cu12 nvidia/cuda_nvcc/cu13; do cands+=("$d/$sub"); done
  done <<<"$SITE_DIRS"
  [[ -n "${CUDA_HOME:-}" ]] && cands+=("$CUDA_HOME")
  [[ -n "${CUDA_PATH:-}" ]] && cands+=("$CUDA_PATH")
  if command -v ptxas >/dev/null; then cands+=("$(dirname "$(dirname "$(readlink -f "$(command -v ptxas)")")")"); fi
  cands+=(/usr/local/cuda /usr/local/cuda-13* /usr/local/cuda-12* /usr/lib/cuda)
  for d in "${cands[@]}"; do
    if is_data_dir "$d"; then DATA_DIR="$d"; break; fi
  done
fi
if [[ -z "$DATA_DIR" ]]; then
  # ptxas and libdevice may live in different packages: join them in one directory.
  ptxas="$(command -v ptxas || true)"
  [[ -z "$ptxas" ]] && ptxas="$(find /usr/local /opt $(echo $SITE_DIRS) -maxdepth 6 -name ptxas -type f 2>/dev/null | head -1 || true)"
  libdev="$(find /usr/local /opt $(echo $SITE_DIRS) -maxdepth 7 -type d -path '*nvvm/libdevice' 2>/dev/null | head -1 || true)"
  if [[ -n "$ptxas" && -n "$libdev" ]]; then
    DATA_DIR="/tmp/idefics2_cuda_data"
    mkdir -p "$DATA_DIR/bin" "$DATA_DIR/nvvm"
    ln -sfn "$ptxas" "$DATA_DIR/bin/ptxas"
    ln -sfn "$libdev" "$DATA_DIR/nvvm/libdevice"
  fi
fi
if [[ -n "$DATA_DIR" ]]; then
  export XLA_FLAGS="--xla_gpu_cuda_data_dir=$DATA_DIR ${XLA_FLAGS_EXTRA:-}"
  say "CUDA data dir: $DATA_DIR (ptxas $("$DATA_DIR/bin/ptxas" --version 2>/dev/null | tail -1 || echo '?'))"
else
  export XLA_FLAGS="${XLA_FLAGS_EXTRA:-}"
  say "WARNING: no directory with bin/ptxas and nvvm/libdevice found; XLA may fail to compile"
fi
export GOPJRT_CUDA_CHECKS=0 GOMLX_NO_AUTO_INSTALL=1
# preallocate=false: XLA grows its pool as needed, so nvidia-smi's peak is what the run used.
export GOMLX_BACKEND="xla:$PLUGIN,preallocate=false"
say "GOMLX_BACKEND=$GOMLX_BACKEND"
say "XLA_FLAGS=$XLA_FLAGS"

peak_flag=()
[[ -n "${PEAK_TFLOPS:-}" ]] && peak_flag=(--peak-tflops "$PEAK_TFLOPS")
common=(--size "$SIZE" --dtype "$DTYPE" --batch "$BATCH" --text-tokens "$TEXT_TOKENS"
        --new-tokens "$NEW_TOKENS" --iters "$ITERS" --sections "$SECTIONS" "${peak_flag[@]}")

# --- ours ---------------------------------------------------------------------------------------
say "ours: $BIN ${common[*]} (limit ${OURS_TIMEOUT}s)"
run_ours() {
  local left=$(( OURS_TIMEOUT - ($(date +%s) - t_ours) ))
  (( left > 20 )) || { say "ours: no time left"; return 124; }
  timeout --signal=TERM --kill-after=15 "$left" "$BIN" "${common[@]}" --out "$OUT/ours-$SIZE.json" 2>&1 | tee "$OUT/.ours.log"
  return "${PIPESTATUS[0]}"
}
t_ours=$(date +%s)
set +e
run_ours
rc_ours=$?
if [[ $rc_ours -ne 0 && ! -f "$OUT/ours-$SIZE.json" ]] && grep -q "Unexpected option name" "$OUT/.ours.log"; then
  say "the plugin refused a client option; again without options"
  export GOMLX_BACKEND="xla:$PLUGIN"
  run_ours
  rc_ours=$?
fi
set -e
rm -f "$OUT/.ours.log"
say "ours finished with status $rc_ours after $(( $(date +%s) - t_start ))s"
sleep 3 # let the GPU memory go back

# --- HF -----------------------------------------------------------------------------------------
say "hf: versions $("$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
set +e
PYTHONUNBUFFERED=1 timeout --signal=TERM --kill-after=15 "$HF_TIMEOUT" "$PY" scripts/bench_hf.py "${common[@]}" --out "$OUT/hf-$SIZE.json"
rc_hf=$?
set -e
say "hf finished with status $rc_hf after $(( $(date +%s) - t_start ))s"

# --- comparison -----------------------------------------------------------------------------------
if [[ -f "$OUT/ours-$SIZE.json" && -f "$OUT/hf-$SIZE.json" ]]; then
  "$BIN" -compare "$OUT/ours-$SIZE.json,$OUT/hf-$SIZE.json" | tee "$OUT/compare-$SIZE.txt"
else
  say "no comparison: a JSON is missing ($(ls "$OUT" | tr '\n' ' '))"
fi
say "done in $(( $(date +%s) - t_start ))s (ours status $rc_ours, hf status $rc_hf)"
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
