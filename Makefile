# Two commands for a new user: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
NPM ?= npm

.PHONY: run test build install typecheck lint bench bench-binary bench-rewrite clean

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	$(NPM) run --silent build

typecheck: install
	npx tsc -p tsconfig.test.json --noEmit

# Type-aware lint rules that catch real bugs (floating promises, type-only imports, exhaustive switches).
lint: install
	npx eslint src

# Starts the gateway on its embedded defaults (demo mode when no upstream is configured).
run: build
	node bin/fhir-binary-gateway.js $(if $(CONFIG),--config $(CONFIG),)

# Builds, type-checks and runs every test (unit and integration, against real servers).
test: build typecheck lint
	$(NPM) test --silent

# Pass-through throughput against a bare proxy and nginx (issue 2), about a minute.
bench: build
	bash bench/run.sh proxy-throughput

# 64 MiB and 1 GiB raw Binary up and down against nginx, with peak RSS (issue 3), a few minutes and
# ~7 GiB of temp disk. Not part of `bench`: it is long and disk-hungry. BENCH_SIZES / BENCH_ROUNDS to change.
bench-binary: build
	bash bench/run.sh binary-transfer

# ~1 GiB of temp disk, a few minutes. BENCH_MIB / BENCH_ROUNDS / BENCH_REPS to change.
bench-rewrite: build
	bash bench/run.sh rewrite

clean:
	rm -rf dist .tap coverage
