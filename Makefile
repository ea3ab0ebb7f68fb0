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
	$(GO) test -count=1 -timeout 40m ./...

# The README's first command: trains the tiny embedded model on the embedded dataset.
tiny-train: setup
	$(GO) run ./cmd/idefics2-train --config configs/tiny.yaml

# Python reference stack (fixtures and side-by-side benchmarks only; several GB with torch).
venv: $(PY)
$(PY): scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r scripts/requirements.txt
	touch $(PY)

fixtures: venv
	$(PY) scripts/make_model_fixtures.py --out testdata/fixtures
	$(PY) scripts/make_processor_fixtures.py --out testdata/fixtures --pillow-out testdata/pillow

# Processor fixtures alone (about a minute); add --full --out DIR for uncut tensors.
processor-fixtures: venv
	$(PY) scripts/make_processor_fixtures.py --out testdata/fixtures --pillow-out testdata/pillow

# Rebuilds testdata/tokenizer/idefics2 from the npm package mistral-tokenizer-js (needs npm, node).
idefics2-tokenizer: venv
	$(PY) scripts/make_tokenizer.py --out testdata/tokenizer/idefics2

# Images/s of data's image processor against HF's Idefics2ImageProcessorPil on the same images.
bench-processor: setup venv
	$(GO) test ./data -run '^$$' -bench ImageProcessor -benchtime 20x -cpu 1
	$(PY) scripts/bench_processor.py

clean:
	rm -rf $(BUILD)
