# Two commands for a new user: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
NPM ?= npm

.PHONY: run test build install typecheck lint bench clean

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

bench: build
	bash bench/proxy-throughput.sh

clean:
	rm -rf dist .tap coverage
