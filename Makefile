# changestream developer commands. `make help` lists them; CI runs `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --group dev
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the build, test and lint tools

.PHONY: build
build: venv ## Build the extension (release) into .venv
	$(VENV)/bin/maturin develop --release --quiet

# Wheels link against an old glibc (zig is the linker and C compiler, from the `ziglang` package
# maturin finds through the venv's python), so they install on any Linux with glibc 2.28+. They
# build in target/zig, so `make build` and `make wheel` do not rebuild each other's C libraries.
MANYLINUX ?= manylinux_2_28

.PHONY: wheel
wheel: venv ## Build the self-contained abi3 wheel (manylinux, x86-64) into target/wheels
	PATH="$(abspath $(VENV))/bin:$$PATH" CARGO_TARGET_DIR=target/zig $(VENV)/bin/maturin build \
		--release --zig --compatibility $(MANYLINUX) --out target/wheels

# The same wheel for 64-bit ARM Linux (Graviton, Ampere, Raspberry Pi OS 64-bit), cross-built:
# zig compiles OpenSSL, librdkafka, zlib and zstd for aarch64 and links against glibc 2.28.
# Needs the Rust target (`rustup target add aarch64-unknown-linux-gnu`). Kept apart from
# target/wheels, whose newest wheel the tests install on this machine.
.PHONY: wheel-aarch64
wheel-aarch64: venv ## Cross-build the aarch64 manylinux wheel into target/wheels-aarch64
	PATH="$(abspath $(VENV))/bin:$$PATH" CARGO_TARGET_DIR=target/zig \
		CC="$(abspath tools/zig-cc-aarch64)" CXX="$(abspath tools/zig-cxx-aarch64)" HOST_CC=cc HOST_CXX=c++ \
		$(VENV)/bin/maturin build --release --zig --target aarch64-unknown-linux-gnu \
		--compatibility $(MANYLINUX) --out target/wheels-aarch64

.PHONY: sdist
sdist: venv ## Build the source distribution into target/wheels
	$(VENV)/bin/maturin sdist --out target/wheels

.PHONY: notices
notices: ## Rewrite THIRD-PARTY-NOTICES.md from the linked crates and C libraries
	python3 tools/third_party_notices.py

.PHONY: stack-up
stack-up: ## Start Kafka, the schema registry and PostgreSQL on 127.0.0.1 (writes .stack.env)
	tests/stack/stack.sh up

.PHONY: stack-down
stack-down: ## Stop the services and delete their data
	tests/stack/stack.sh down

.PHONY: test
test: build wheel stack-up ## Build, start the stack, run cargo test and pytest
	$(CARGO) test --quiet
	$(PY) -m pytest

.PHONY: test-fast
test-fast: build ## cargo test and the Python tests that need no stack (no Java; a few minutes)
	$(CARGO) test --quiet
	$(PY) -m pytest -m "not stack and not wheel and not slow"

.PHONY: demo
demo: build stack-up ## Build, start the stack, capture a shop database into Kafka and print its changes
	$(PY) examples/shop_demo.py

.PHONY: bench
bench: build stack-up ## Benchmark against confluent-kafka, fastavro and aiokafka (writes benches/results.*)
	$(PY) benches/bench.py $(BENCH_ARGS)

.PHONY: bench-capture
bench-capture: build stack-up ## Capture speed (snapshot, stream) beside pg_recvlogical (ROWS=1000000)
	$(PY) benches/bench_capture.py --rows $(or $(ROWS),1000000)

.PHONY: bench-follow
bench-follow: build stack-up ## Followers: 1M Debezium events into SQLite, DuckDB, PostgreSQL (writes benches/follow_results.md)
	$(PY) benches/follow_bench.py $(BENCH_ARGS)

.PHONY: soak
soak: build ## Slow broker-fault tests, then a produce/consume soak with a broker restart (SOAK_MINUTES=30)
	$(PY) -m pytest tests/test_broker_faults.py -m slow -s
	$(PY) tests/soak.py --minutes $(or $(SOAK_MINUTES),30)

.PHONY: lint
lint: build ## cargo fmt --check, clippy -D warnings, ruff, mypy, stubtest, notices up to date
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests examples tools
	$(VENV)/bin/ruff format --check python tests examples tools
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest changestream._core
	python3 tools/third_party_notices.py --check

.PHONY: format
format: venv ## Format Rust and Python code
	$(CARGO) fmt --all
	$(VENV)/bin/ruff format python tests examples tools
	$(VENV)/bin/ruff check --fix python tests examples tools

.PHONY: clean
clean: ## Remove build outputs and .venv (keeps the stack; see stack-down)
	rm -rf target $(VENV) python/changestream/*.so
