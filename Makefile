# Two commands for a new user: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
# A recipe that fails leaves no target behind (an install whose `tap build` failed is retried).
.DELETE_ON_ERROR:
NPM ?= npm

.PHONY: run token test test-unit test-int build install typecheck lint format bench bench-binary bench-rewrite bench-builds clean

# tap is built with its plugins (package.json's tap.plugin) here, not by its first run: a run that
# rebuilds them still starts its test processes with the plugin set it had loaded itself.
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	npx tap build
	@touch $@

install: node_modules/.package-lock.json

build: install
	$(NPM) run --silent build

# Type-checks src, test and bench, and writes their JavaScript to .build/: the tests load it from
# there (test/tools/ts, a tap plugin) instead of transpiling every file again in each test process.
# .build/.stamp is as old as the start of the last complete run: output of a source saved since
# (even while tsc ran) is not used (test/tools/ts/hooks.mjs transpiles that file itself).
typecheck: install
	@mkdir -p .build && touch .build/.stamp.next
	npx tsc -p tsconfig.test.json
	@mv .build/.stamp.next .build/.stamp

# Type-aware lint rules that catch real bugs (floating promises, type-only imports, exhaustive
# switches) over src, test and bench, and the formatter's check (`make format` rewrites).
lint: install
	npx eslint src test bench bin
	npx prettier --check --log-level warn .

format: install
	npx prettier --write --log-level warn .

# Starts the gateway on its embedded defaults (demo mode when no upstream is configured).
run: build
	node bin/fhir-binary-gateway.js $(if $(CONFIG),--config $(CONFIG),)

# A development token for policies/examples/dev.yaml (its shipped key pair): `make token SCOPE="user/*.cruds"`.
SCOPE ?= user/*.cruds fhir.write
token: build
	@node bin/fhir-binary-gateway.js token --config policies/examples/dev.yaml --key policies/examples/dev-key.json --scope "$(SCOPE)"

# Builds, type-checks, lints and runs every test (unit and integration, against real servers).
# tap's raw TAP goes to .tap/results.tap; what is printed is one line per test file, every
# failure in full, the coverage gate, and a last line `N passed, N failed` counting tests.
# package.json sets tap's jobs to 2: tap's own default on a 2-core machine is one file at a time,
# and most test files spend their time waiting on the servers they start (CI took ~30 min serial).
TAP_RUN = npx tap --reporter=silent --output-file=.tap/results.tap --coverage-report=json-summary

test: build typecheck lint
	@$(MAKE) --no-print-directory tap-run TAP_ARGS=

# One area alone: `make test-unit` (no real servers), `make test-int`, or
# `make tap-run TAP_ARGS=test/security` for a folder.
test-unit: build typecheck
	@$(MAKE) --no-print-directory tap-run TAP_ARGS="--exclude='**/*.int.test.ts'"

test-int: build typecheck
	@$(MAKE) --no-print-directory tap-run TAP_ARGS="--include='test/**/*.int.test.ts'"

.PHONY: tap-run
tap-run:
	@mkdir -p .tap; rm -rf .tap/coverage .tap/report
	@$(TAP_RUN) $(TAP_ARGS); tap=$$?; \
	  node test/tools/report.mjs .tap/results.tap; report=$$?; \
	  gate=0; if [ -z "$(TAP_ARGS)" ]; then node test/tools/coverage-gate.mjs .tap/report/coverage-summary.json; gate=$$?; fi; \
	  [ $$tap -eq 0 ] && [ $$report -eq 0 ] && [ $$gate -eq 0 ]

# Pass-through throughput against a bare proxy and nginx, about a minute.
bench: build
	bash bench/run.sh proxy-throughput

# 64 MiB and 1 GiB raw Binary up and down against nginx, with peak RSS, a few minutes and
# ~7 GiB of temp disk. Not part of `bench`: it is long and disk-hungry. BENCH_SIZES / BENCH_ROUNDS to change.
bench-binary: build
	bash bench/run.sh binary-transfer

# ~1 GiB of temp disk, a few minutes. BENCH_MIB / BENCH_ROUNDS / BENCH_REPS to change.
bench-rewrite: build
	bash bench/run.sh rewrite

# This build against a previous revision, in one run: small reads, raw Binary, externalize and
# inflate through both builds taking turns (a change that moves code must not slow it).
# PREVIOUS=<git rev>; about five minutes.
bench-builds: build
	bash bench/builds.sh $(or $(PREVIOUS),HEAD~1)

clean:
	rm -rf dist .build .tap coverage
