# One entry point for people and CI. `make test` is exactly what CI runs.
SHELL := /bin/bash
GO ?= go
BUILD := $(CURDIR)/build

# The pure Go backend with unlimited op parallelism: the default parallelism deadlocks on
# backward graphs with many independent matmuls (see docs in internal/backend).
export GOMLX_BACKEND ?= go:parallelism=-1
# Never let gomlx try to download PJRT plugins: the machines we target may have no internet.
export GOMLX_NO_AUTO_INSTALL := 1

# daulet/tokenizers links against a Rust static library built from the module's own source.
TOKENIZERS_VERSION := v1.22.1
TOKENIZERS_LIB := $(BUILD)/tokenizers/libtokenizers.a
export CGO_ENABLED := 1
export CGO_LDFLAGS := -L$(BUILD)/tokenizers

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python

.PHONY: all setup sysdeps test vet tiny-train fixtures venv tokenizers clean bench processor-fixtures idefics2-tokenizer bench-processor

all: test

setup: sysdeps tokenizers
	$(GO) mod download

# data/ decodes JPEG and WebP with the C libraries Pillow uses (libjpeg-turbo, libwebp) so that
# pixels equal HF's; Go's own decoders differ by up to tens of levels. Debian packages provide
# the headers and libraries; they are installed here when missing (CI runs as root).
SYSDEPS_HEADERS := /usr/include/jpeglib.h /usr/include/webp/demux.h
sysdeps:
	@for h in $(SYSDEPS_HEADERS); do [ -f $$h ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing libjpeg62-turbo-dev libwebp-dev (JPEG/WebP decoding identical to Pillow's)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjpeg62-turbo-dev libwebp-dev \
			|| { echo "could not install libjpeg62-turbo-dev libwebp-dev: install them (Debian/Ubuntu package names) and re-run"; exit 1; }; \
	fi

tokenizers: $(TOKENIZERS_LIB)

# The module cache is read-only, so the crate is copied into the build tree and built there
# (about 4 minutes on 2 cores the first time; cached afterwards).
$(TOKENIZERS_LIB):
	@mkdir -p $(BUILD)/tokenizers
	$(GO) mod download github.com/daulet/tokenizers
	rm -rf $(BUILD)/tokenizers-src && cp -r $$($(GO) list -m -f '{{.Dir}}' github.com/daulet/tokenizers) $(BUILD)/tokenizers-src
	chmod -R u+w $(BUILD)/tokenizers-src
	cd $(BUILD)/tokenizers-src && cargo build --release --locked --lib
	cp $(BUILD)/tokenizers-src/target/release/libtokenizers.a $(TOKENIZERS_LIB)

vet: setup
	$(GO) vet ./...

test: setup
	$(GO) vet ./...
	bash scripts/gpu_bench_test.sh
	$(GO) test -count=1 -timeout 40m ./...

# The README's first command: trains the tiny embedded model on the embedded dataset. A demo is
# run again rather than continued, so it replaces the previous tiny run (TINY_FLAGS=--resume
# continues it instead).
TINY_FLAGS ?= --overwrite
tiny-train: setup
	$(GO) run ./cmd/idefics2-train --config configs/tiny.yaml $(TINY_FLAGS)

# Python reference stack (fixtures and side-by-side benchmarks only; several GB with torch).
venv: $(PY)
$(PY): scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r scripts/requirements.txt
	touch $(PY)

# Every committed reference file, from the pinned Python stack; re-running reproduces them byte
# for byte on this machine kind.
fixtures: venv
	$(PY) scripts/make_model_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_train_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_generate_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_adapter_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_quant_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_qmodel_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_qtrain_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_qadapter_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_metric_fixtures.py
	$(PY) scripts/make_schedule_fixtures.py
	$(PY) scripts/make_processor_fixtures.py --out testdata/fixtures --pillow-out testdata/pillow
	$(PY) scripts/make_datasets.py --out testdata/datasets

# Processor fixtures alone (about a minute); add --full --out DIR for uncut tensors.
processor-fixtures: venv
	$(PY) scripts/make_processor_fixtures.py --out testdata/fixtures --pillow-out testdata/pillow

# Rebuilds testdata/tokenizer/idefics2 from the npm package mistral-tokenizer-js (needs npm, node).
idefics2-tokenizer: venv
	$(PY) scripts/make_tokenizer.py --out testdata/tokenizer/idefics2

# Images/s of data's image processor against HF's Idefics2ImageProcessorPil on the same images.
# (runs the Go benchmark itself, both pinned to one core, and prints the ratio)
bench-processor: setup venv
	$(PY) scripts/bench_processor.py

clean:
	rm -rf $(BUILD)

# Every fuzz target for a few seconds each (FUZZTIME), after its committed seeds in
# <package>/testdata/fuzz/<target>: what reads files and requests never panics. Minimization is
# off: in packages as large as train it can take minutes per new input, and a failing input is
# written to testdata/fuzz either way. `go test` alone runs the seeds as ordinary tests.
FUZZTIME ?= 5s
FUZZ_TARGETS := model:FuzzSafetensorsHeader data:FuzzChatTemplate cauldron:FuzzChatMessages \
	cauldron:FuzzJSONLRow cauldron:FuzzParquetRecord train:FuzzLoadConfig \
	serve:FuzzDecodeChatRequest serve:FuzzDecodeTGIRequest

.PHONY: fuzz-smoke
fuzz-smoke: setup
	set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./$${t%%:*}/; \
	done

# ---- XLA CPU plugin and the side-by-side benchmark ------------------------------------------

# XLA's CPU PJRT plugin from PyPI (optional): lammps-jax-pjrt-cpu 0.11.2 ships XLA's
# pjrt_c_api_cpu_plugin.so built from jaxlib 0.11.2's XLA (PJRT C API 0.115; go-xla v0.1.4 is
# written against 0.83, and the C API keeps newer plugins usable by older clients). The wheel
# is pinned by its sha256. Afterwards GOMLX_BACKEND=xla:cpu finds it (internal/backend).
PJRT_CPU_PKG := lammps-jax-pjrt-cpu==0.11.2
PJRT_CPU_WHEEL := lammps_jax_pjrt_cpu-0.11.2-py3-none-manylinux_2_27_x86_64.whl
PJRT_CPU_SHA256 := 1319390d948b39f69f7dade496b7c385149d9ca6097a6b62114da113216d9ad1
PJRT_CPU_PLUGIN := $(BUILD)/pjrt/pjrt_c_api_cpu_plugin.so

.PHONY: pjrt-cpu test-xla-cpu bench-go gpu-bench-build gpu-rehearse bench-qlora

pjrt-cpu: $(PJRT_CPU_PLUGIN)

$(PJRT_CPU_PLUGIN):
	@mkdir -p $(BUILD)/pjrt/wheel
	python3 -m pip download -q --no-deps --only-binary=:all: -d $(BUILD)/pjrt/wheel '$(PJRT_CPU_PKG)'
	echo '$(PJRT_CPU_SHA256)  $(BUILD)/pjrt/wheel/$(PJRT_CPU_WHEEL)' | sha256sum -c -
	python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so"))' \
		$(BUILD)/pjrt/wheel/$(PJRT_CPU_WHEEL) $@.tmp
	mv $@.tmp $@
	rm -rf $(BUILD)/pjrt/wheel
	@echo "installed $@ (GOMLX_BACKEND=xla:cpu)"

# The parity fixtures (forward, train, generate) on XLA's CPU backend instead of the pure Go one,
# and continuous batching (the KV-cache resize and placement graphs, the server's running batch).
test-xla-cpu: setup pjrt-cpu
	GOMLX_BACKEND=xla:$(PJRT_CPU_PLUGIN) $(GO) test -count=1 -short -timeout 40m -run 'Parity|Build8B|Plan8B|Checkpointing|Running' ./model/ ./train/ ./bench/
	GOMLX_BACKEND=xla:$(PJRT_CPU_PLUGIN) $(GO) test -count=1 -timeout 10m -run 'JoinRunningBatch|BatchedEqualsAlone' ./serve/

# `make bench`: ours (cmd/idefics2-bench) and HF transformers + PEFT (scripts/bench_hf.py) on
# the same configs, batch shape and machine, then the table with ours/HF ratios. Our backend is
# XLA's CPU plugin when `make pjrt-cpu` installed it, else the pure Go one (about 20 minutes
# for the small size on 2 cores); BENCH_BACKEND=... picks another. Sizes: tiny (the test
# fixture), small (~100M), 8b (a GPU's job: scripts/gpu_bench.sh).
BENCH_SIZES ?= tiny small
BENCH_FLAGS ?= --iters 3 --new-tokens 16
BENCH_BACKEND ?= $(if $(wildcard $(PJRT_CPU_PLUGIN)),xla:$(PJRT_CPU_PLUGIN),$(GOMLX_BACKEND))
BENCH_OUT := $(BUILD)/bench

bench: setup venv bench-go
	set -e; for s in $(BENCH_SIZES); do \
		GOMLX_BACKEND='$(BENCH_BACKEND)' $(BUILD)/idefics2-bench --size $$s $(BENCH_FLAGS) --out $(BENCH_OUT)/ours-$$s.json; \
		$(PY) scripts/bench_hf.py --size $$s $(BENCH_FLAGS) --out $(BENCH_OUT)/hf-$$s.json; \
	done
	for s in $(BENCH_SIZES); do \
		$(BUILD)/idefics2-bench -compare $(BENCH_OUT)/ours-$$s.json,$(BENCH_OUT)/hf-$$s.json; echo; \
	done | tee $(BENCH_OUT)/compare.txt

# The QLoRA train step (NF4 base, connector LoRA'd) against the bf16 LoRA step (connector fully
# trained, as configs/sft.yaml) on the small config, same run: the cost of dequantizing per layer.
bench-qlora: bench-go
	GOMLX_BACKEND='$(BENCH_BACKEND)' $(BUILD)/idefics2-bench --size small --dtype bfloat16 --sections train --iters 3 \
		--out $(BENCH_OUT)/ours-small-lora.json | grep -E 'train'
	GOMLX_BACKEND='$(BENCH_BACKEND)' $(BUILD)/idefics2-bench --size small --dtype bfloat16 --sections train --iters 3 \
		--quantization nf4 --connector lora --out $(BENCH_OUT)/ours-small-qlora.json | grep -E 'train'

bench-go: setup
	@mkdir -p $(BENCH_OUT)
	$(GO) build -o $(BUILD)/idefics2-bench ./cmd/idefics2-bench

# What scripts/gpu_bench.sh runs on a GPU machine: the bench binary built here (cgo), stripped
# and gzipped to stay small when copied to the GPU machine (about 18 MB), and copies of the shared
# libraries it needs beyond glibc and libstdc++, in build/gpu (carry that folder; GPU_BUILD=...
# puts it elsewhere).
GPU_BUILD ?= $(BUILD)/gpu
gpu-bench-build: setup
	@rm -rf $(GPU_BUILD) && mkdir -p $(GPU_BUILD)/lib
	$(GO) build -ldflags='-s -w' -o $(GPU_BUILD)/idefics2-bench ./cmd/idefics2-bench
	ldd $(GPU_BUILD)/idefics2-bench | awk '/=> \// {print $$3}' \
		| grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' \
		| xargs -r -I{} cp -L {} $(GPU_BUILD)/lib/
	gzip -6 $(GPU_BUILD)/idefics2-bench
	@ls -la $(GPU_BUILD) $(GPU_BUILD)/lib

# scripts/gpu_bench.sh end to end on this machine: the same discovery, preflight, budgets and both
# sides, on XLA's CPU plugin at size tiny (the HF side when `make venv` made .venv, else a line
# saying it is skipped); output in build/gpu-rehearse. CI runs it (about 2 minutes).
gpu-rehearse: gpu-bench-build pjrt-cpu
	bash scripts/gpu_bench.sh --rehearse

# ---- PEFT / transformers round trip -----------------------------------------------------------

.PHONY: peft-check

# Adapters written by idefics2-adapter load in PEFT and merged checkpoints in transformers, with
# the same logits as the Go side within 1e-4: trains the tiny model a few steps, exports the
# checkpoint, merges it (f32 sharded, bf16), and compares PeftModel.from_pretrained and
# Idefics2ForConditionalGeneration.from_pretrained against the Go logits; also converts a
# key-variant PEFT adapter back with `idefics2-adapter import --out` and loads it in PEFT.
# Needs the Python stack (make venv), so it is not part of `make test`.
peft-check: setup venv
	@mkdir -p $(BUILD)
	$(GO) build -o $(BUILD)/idefics2-adapter ./cmd/idefics2-adapter
	$(GO) build -o $(BUILD)/idefics2-train ./cmd/idefics2-train
	$(PY) scripts/check_peft_roundtrip.py --adapter-bin $(BUILD)/idefics2-adapter --train-bin $(BUILD)/idefics2-train --work build/peft-check

# ---- idefics2-serve with real clients -----------------------------------------------------------

.PHONY: serve-check

# idefics2-serve against the clients people use, on 127.0.0.1: the official openai package and
# TGI's text_generation client (the model card's code). The greedy answers of chat completions
# (streamed and not, base and adapter) and of TGI's generate/generate_stream must equal
# idefics2-generate's for the same image and prompt. Uses the tiny model and adapter of
# `make tiny-train` (trained first when missing).
serve-check: setup venv
	$(VENV)/bin/pip install -q --no-deps text-generation==0.7.0
	@[ -f runs/tiny/adapter/adapter_config.json ] || { mkdir -p runs/tiny && $(MAKE) tiny-train; }
	@mkdir -p $(BUILD)/serve-check
	$(GO) build -o $(BUILD)/serve-check/idefics2-serve ./cmd/idefics2-serve
	$(GO) build -o $(BUILD)/serve-check/idefics2-generate ./cmd/idefics2-generate
	$(PY) scripts/check_serve.py --bin $(BUILD)/serve-check --model runs/tiny-model \
		--tokenizer testdata/tokenizer/idefics2 --adapter tiny-sft=runs/tiny/adapter

# Load on idefics2-serve over loopback next to HF transformers' generate on the same prompts, in
# one run (scripts/bench_serve.py): concurrency 1, 4 and 16 of streamed chat completions with an
# image against generate one by one and in batches of 4 and 16; generated tokens/s, time to first
# token and latency p50/p99 of each, the ratios ours/HF, and how many greedy answers differ from
# HF's (0 expected). Bounded in count (16 requests per level) and time (--level-timeout 300 s per
# level and HF mode). The small config (random weights, 56M parameters, 224-pixel images) on XLA's
# CPU plugin when `make pjrt-cpu` installed it; BENCH_SERVE_SIZE=tiny takes the model of
# `make tiny-train`. About a minute on 2 cores. AMD EPYC, 2 cores shared with other jobs (noisy:
# two more runs gave 0.94x / 0.88x and 0.69x / 0.82x at 4 and 16); README has the table:
#   concurrency          1      4     16
#   ours tokens/s     42.4   67.4   81.5   (TTFT p50 0.17 / 0.50 / 1.88 s)
#   HF tokens/s       33.7   58.1   76.1   (one by one, batches of 4, of 16; TTFT 0.17 / 0.52 / 2.16 s)
#   ours / HF        1.26x  1.16x  1.07x
.PHONY: bench-serve
BENCH_SERVE_SIZE ?= small
BENCH_SERVE_FLAGS ?= --warmup
BENCH_SERVE_BACKEND ?= $(if $(wildcard $(PJRT_CPU_PLUGIN)),xla:$(PJRT_CPU_PLUGIN),$(GOMLX_BACKEND))
bench-serve: setup venv
	@if [ "$(BENCH_SERVE_SIZE)" = tiny ] && [ ! -f runs/tiny-model/config.json ]; then mkdir -p runs/tiny && $(MAKE) tiny-train; fi
	@mkdir -p $(BUILD)/serve-check
	$(GO) build -o $(BUILD)/serve-check/idefics2-serve ./cmd/idefics2-serve
	GOMLX_BACKEND=$(BENCH_SERVE_BACKEND) $(PY) scripts/bench_serve.py --bin $(BUILD)/serve-check \
		--size $(BENCH_SERVE_SIZE) --model runs/tiny-model --tokenizer testdata/tokenizer/idefics2 $(BENCH_SERVE_FLAGS)
