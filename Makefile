# Patrol's developer entry points. `make help` lists them.

GO      ?= go
BIN     ?= bin/patrol
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static bin/patrol (CGO disabled)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/patrol

.PHONY: test
test: ## Run every test under the race detector (README's test command)
	$(GO) test -race -count=1 ./...

.PHONY: bench
bench: ## Run the benchmarks and print their figures (throughput: median of 5 runs)
	$(GO) test -run '^$$' -bench . -benchtime 10x ./queue/
	$(GO) test -run '^$$' -bench Throughput -benchtime 5x ./internal/throughput/
	$(GO) test -run '^$$' -bench SmallBatchBesideLarge -benchtime 1x -timeout 120m ./internal/throughput/
	$(GO) test -run '^$$' -bench Shard100k -benchtime 3x ./internal/shardbench/
	$(GO) test -run '^$$' -bench HTTPConcurrency1000 -benchtime 3x ./internal/workerbench/
	$(GO) test -run '^$$' -bench ExecVsXargs5000 -benchtime 3x ./internal/workerbench/
	$(GO) test -run '^$$' -bench QueueScrape20k -benchtime 10x ./internal/metrics/
	$(GO) test -run '^$$' -bench 'FarEtcd|FarThroughput|SaturatedEtcd' -benchtime 3x -timeout 60m ./internal/farbench/
	$(GO) test -run '^$$' -bench 'Scale|IdleLeader' -benchtime 1x -timeout 60m ./internal/scalebench/

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: static-check
static-check: build ## Prove bin/patrol is statically linked
	@if command -v file >/dev/null; then file $(BIN); fi
	$(GO) test -count=1 -run TestBinaryIsStatic ./internal/buildtest/

.PHONY: docs
docs: ## Regenerate docs/cli.md from the command definitions
	PATROL_UPDATE_DOCS=1 $(GO) test -count=1 -run TestCLIReferenceIsCurrent ./cmd/patrol/

.PHONY: demo
demo: ## Run the demo batch on an embedded etcd (README's run command)
	$(GO) run ./cmd/patrol dev --demo

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
