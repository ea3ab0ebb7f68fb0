#!/usr/bin/env bash
# Tests of scripts/gpu_bench.sh's preflight on fake machines: a site-packages tree with a fake
# jax-cuda13-pjrt plugin (a shared library with the real one's RPATH) and stub CUDA libraries
# where the real ones live, fake nvidia-smi, ldconfig and ptxas, and triton's libdevice. Each broken
# machine must stop the script before anything long starts, with exactly one line naming the
# problem; the sound one must pass, linking triton's libdevice into a CUDA data directory.
# `make test` runs it; it needs bash, a C compiler and python3.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/gpu_bench.sh"
T="$(mktemp -d "${TMPDIR:-/tmp}/gpu-bench-test.XXXXXX")"
trap 'rm -rf "$T"' EXIT
CC="${CC:-cc}"
# The interpreter itself, not a version manager's shim that needs its own PATH entries.
PY="$(python3 -c 'import sys; print(sys.executable)')" || { echo "gpu_bench_test: python3 is needed"; exit 1; }

passed=0 failed=0
ok() { passed=$(( passed + 1 )); echo "ok   $1"; }
bad() { failed=$(( failed + 1 )); echo "FAIL $1"; sed 's/^/     | /' "$T/last.txt"; }

# ---- the fake machine ---------------------------------------------------------------------------
# Like jax-cuda13-pjrt 0.11.2: the plugin NEEDS no CUDA library, it dlopens them at run time
# through its RPATH into site-packages/nvidia/{cu13,cudnn}/lib; the driver's libcuda.so.1 is in
# the loader's cache.
SITE="$T/site"
mkdir -p "$T/bin" "$T/stub" "$T/driver" "$T/tmp" "$SITE/jax_plugins/xla_cuda13" "$SITE/triton/backends/nvidia/lib"
echo 'int stub(void) { return 0; }' >"$T/stub.c"
build() { "$CC" -shared -fPIC -o "$@" || { echo "gpu_bench_test: $CC failed"; exit 1; }; }
for so in libcudart.so.13 libcublasLt.so.13 libcudnn_graph.so.9; do build "$T/stub/$so" -Wl,-soname,$so "$T/stub.c"; done
# Libraries that need others beside them, found through their own RUNPATH.
build "$T/stub/libcublas.so.13" -Wl,-soname,libcublas.so.13 "$T/stub.c" -Wl,--no-as-needed "$T/stub/libcublasLt.so.13" -Wl,--enable-new-dtags,-rpath,'$ORIGIN'
build "$T/stub/libcudnn.so.9" -Wl,-soname,libcudnn.so.9 "$T/stub.c" -Wl,--no-as-needed "$T/stub/libcudnn_graph.so.9" -Wl,--enable-new-dtags,-rpath,'$ORIGIN'
build "$T/driver/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$T/stub.c"
build "$SITE/jax_plugins/xla_cuda13/xla_cuda_plugin.so" "$T/stub.c" \
  -Wl,--disable-new-dtags,-rpath,'$ORIGIN/../../nvidia/cu13/lib:$ORIGIN/../../nvidia/cudnn/lib'
touch "$SITE/triton/backends/nvidia/lib/libdevice.10.bc"
cat >"$T/bin/ldconfig" <<EOF
#!/bin/sh
[ -n "\${FAKE_NO_DRIVER:-}" ] || printf '\tlibcuda.so.1 (libc6,x86-64) => %s\n' "$T/driver/libcuda.so.1"
EOF

cat >"$T/bin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
  *--query-gpu=*) echo "NVIDIA H200, 143771, $((143771 - ${FAKE_FREE:-143000})), ${FAKE_FREE:-143000}, ${FAKE_DRIVER:-580.159.03}" ;;
  *--query-compute-apps=*) [ "${FAKE_FREE:-143000}" -lt 100000 ] && echo "4242, python3, 120000 MiB" ;;
  *) echo "| NVIDIA-SMI ${FAKE_DRIVER:-580.159.03}   Driver Version: ${FAKE_DRIVER:-580.159.03}   CUDA Version: ${FAKE_CUDA:-13.0}     |" ;;
esac
EOF
cat >"$T/ptxas" <<'EOF'
#!/bin/sh
echo "ptxas: NVIDIA (R) Ptx optimizing assembler"
echo "Cuda compilation tools, release 13.0, V13.0.88"
EOF
chmod +x "$T/bin/nvidia-smi" "$T/bin/ldconfig" "$T/ptxas"

with_cuda_libs() {
  mkdir -p "$SITE/nvidia/cu13/lib" "$SITE/nvidia/cudnn/lib"
  cp "$T/stub/libcudart.so.13" "$T/stub/libcublas.so.13" "$T/stub/libcublasLt.so.13" "$SITE/nvidia/cu13/lib/"
  cp "$T/stub/libcudnn.so.9" "$T/stub/libcudnn_graph.so.9" "$SITE/nvidia/cudnn/lib/"
}
with_ptxas() { mkdir -p "$SITE/nvidia/cu13/bin" && cp "$T/ptxas" "$SITE/nvidia/cu13/bin/ptxas"; }
reset_tree() { rm -rf "$SITE/nvidia" "$T/tmp/idefics2-cuda-data"; }

# preflight ARGS...: the script's preflight on the fake machine (no CUDA on this one, whatever
# the host has); output in $T/last.txt, status in $rc.
preflight() {
  env -i HOME="$HOME" PATH="$T/bin:/usr/bin:/bin" TMPDIR="$T/tmp" PYTHONPATH="$SITE" PYTHON="$PY" \
    OUT="$T/out" BENCH_BIN=/bin/true GPU_BUILD="$T/gpu" SMOKE=0 AUTOTUNE_CACHE="$T/tmp/autotune" LDCONFIG="$T/bin/ldconfig" \
    "$@" bash "$SCRIPT" --preflight-only >"$T/last.txt" 2>&1
  rc=$?
}

# expect_stop NAME CHECK WORDS...: exit 3 and one FAILED line, the last, naming CHECK and WORDS.
expect_stop() {
  local name=$1 check=$2 w line
  shift 2
  line="$(grep 'preflight FAILED' "$T/last.txt")"
  if [[ $rc -ne 3 || $(grep -c 'FAILED' "$T/last.txt") -ne 1 || "$(tail -1 "$T/last.txt")" != "$line" ]]; then
    bad "$name: want exit 3 and one FAILED line at the end, got exit $rc"; return
  fi
  for w in "preflight FAILED: $check:" "$@"; do
    [[ "$line" == *"$w"* ]] || { bad "$name: the line lacks '$w'"; return; }
  done
  ok "$name"
}

# ---- cases --------------------------------------------------------------------------------------
reset_tree
preflight
expect_stop "site-packages without the CUDA libraries" "CUDA libraries" \
  "no libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9" "$SITE/nvidia/cu13/lib" "nvidia-* wheels for CUDA 13"

with_cuda_libs; rm "$SITE/nvidia/cudnn/lib/libcudnn.so.9"
preflight
expect_stop "no cuDNN" "CUDA libraries" "no libcudnn.so.9 in"

with_cuda_libs; rm "$SITE/nvidia/cudnn/lib/libcudnn_graph.so.9"
preflight
expect_stop "cuDNN without a library it needs" "CUDA libraries" "$SITE/nvidia/cudnn/lib/libcudnn.so.9 needs libcudnn_graph.so.9"
with_cuda_libs

preflight FAKE_NO_DRIVER=1
expect_stop "no driver library" "CUDA libraries" "libcuda.so.1"

reset_tree; with_cuda_libs; with_ptxas
preflight
if [[ $rc -eq 0 ]] && grep -q "libdevice only as triton's copy" "$T/last.txt" &&
   [[ "$(readlink "$T/tmp/idefics2-cuda-data/nvvm/libdevice/libdevice.10.bc")" == "$SITE/triton/backends/nvidia/lib/libdevice.10.bc" ]] &&
   [[ "$(readlink "$T/tmp/idefics2-cuda-data/bin/ptxas")" == "$SITE/nvidia/cu13/bin/ptxas" ]] &&
   grep -q -- "XLA_FLAGS=--xla_gpu_cuda_data_dir=$T/tmp/idefics2-cuda-data --xla_gpu_per_fusion_autotune_cache_dir=$T/tmp/autotune" "$T/last.txt" &&
   grep -q "GOMLX_BACKEND=xla:$SITE/jax_plugins/xla_cuda13/xla_cuda_plugin.so,preallocate=false,memory_fraction=0.9$" "$T/last.txt" &&
   grep -q "CUDA libraries: cuBLAS $SITE/nvidia/cu13/lib/libcublas.so.13, cuDNN $SITE/nvidia/cudnn/lib/libcudnn.so.9, driver $T/driver/libcuda.so.1" "$T/last.txt" &&
   grep -q "preflight passed" "$T/last.txt"; then
  ok "a sound machine whose libdevice is only triton's copy"
else
  bad "a sound machine whose libdevice is only triton's copy: want exit 0, triton's libdevice linked, the flags and options"
fi

preflight FAKE_DRIVER=570.86.15 FAKE_CUDA=12.8
expect_stop "a driver older than the plugin's CUDA" "driver" "570.86.15" "CUDA 12.8" "CUDA 13" "580.65.06"

preflight FAKE_DRIVER=575.51.02 FAKE_CUDA=
expect_stop "a driver below CUDA 13's least, no CUDA version shown" "driver" "575.51.02" "580.65.06"

preflight FAKE_FREE=20000
expect_stop "GPU memory held by another process" "GPU memory" "only 19 GiB free of 140" "4242, python3"

rm "$SITE/nvidia/cu13/bin/ptxas"
preflight
expect_stop "no ptxas anywhere" "ptxas/libdevice" "no ptxas" "CUDA_DATA_DIR"
with_ptxas

mv "$SITE/jax_plugins" "$T/jax_plugins.away"
preflight
expect_stop "no jax-cuda13-pjrt" "PJRT plugin" "jax-cuda13-pjrt"
mv "$T/jax_plugins.away" "$SITE/jax_plugins"

env -i HOME="$HOME" PATH="/usr/bin:/bin" PYTHON="$PY" OUT="$T/out" BENCH_BIN=/bin/true SMOKE=0 bash "$SCRIPT" --preflight-only >"$T/last.txt" 2>&1
rc=$?
expect_stop "no NVIDIA driver" "GPU" "nvidia-smi not found" "--rehearse"

preflight BENCH_BIN="$T/missing"
expect_stop "no bench binary" "bench binary" "make gpu-bench-build"

# The first compile, with a stand-in for the bench binary: a plugin that refuses the client options
# gets a second try without them; a compile that fails stops preflight.
cat >"$T/bin/fake-bench" <<'EOF'
#!/bin/sh
case "$GOMLX_BACKEND" in
  *memory_fraction*) echo "idefics2-bench: tiny: PJRT error (code=3): Unexpected option name passed to PJRT_Client_Create: memory_fraction"; exit 1 ;;
esac
[ -z "${FAKE_COMPILE_ERROR:-}" ] && exit 0
echo "idefics2-bench: tiny: INTERNAL: $FAKE_COMPILE_ERROR"; exit 1
EOF
chmod +x "$T/bin/fake-bench"
preflight SMOKE=1 BENCH_BIN="$T/bin/fake-bench"
if [[ $rc -eq 0 ]] && grep -q "WARNING: the plugin refused the client options (preallocate=false,memory_fraction=0.9); again without them" "$T/last.txt" &&
   grep -q "first compile: the plugin compiles and runs" "$T/last.txt"; then
  ok "client options refused: the first compile again without them"
else
  bad "client options refused: the first compile again without them"
fi
preflight SMOKE=1 BENCH_BIN="$T/bin/fake-bench" FAKE_COMPILE_ERROR="ptxas exited with non-zero error code 255"
expect_stop "the first compile fails" "first compile" "did not run" "ptxas exited with non-zero error code 255"

# A whole-number memory fraction still goes as a float; bad values are usage errors.
preflight MEM_FRACTION=1
if [[ $rc -eq 0 ]] && grep -q "memory_fraction=1.0$" "$T/last.txt"; then ok "MEM_FRACTION=1 is passed as 1.0"; else bad "MEM_FRACTION=1 is passed as 1.0"; fi
for args in "MEM_FRACTION=1.5" "MEM_FRACTION=abc" "AUTOTUNE_LEVEL=9" "ITERS=x" "SECTIONS=train,backward"; do
  preflight "$args"
  if [[ $rc -eq 2 && $(wc -l <"$T/last.txt") -eq 1 ]]; then ok "usage error: $args"; else bad "usage error: $args (want exit 2 and one line, got $rc)"; fi
done
bash "$SCRIPT" --bogus >"$T/last.txt" 2>&1
rc=$?
if [[ $rc -eq 2 && $(wc -l <"$T/last.txt") -eq 1 ]]; then ok "unknown argument"; else bad "unknown argument (want exit 2 and one line, got $rc)"; fi

echo "gpu_bench_test: $passed passed, $failed failed"
(( failed == 0 ))
