VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)
GO ?= go
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build test test-unit fuzz lint deb bench demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/keter
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/keter ./cmd/keter

test: ## install test dependencies and run every test in the sandbox systemd
	bash scripts/test.sh

test-unit: ## fast tests only (no systemd needed; integration tests skip)
	$(GO) test ./...

FUZZTIME ?= 20s
fuzz: ## run each fuzz target for FUZZTIME
	bash scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt, go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

deb: ## build dist/keter_VERSION_amd64.deb
	bash scripts/deb.sh

bench: ## measure the speed goals and update BENCHMARKS.md
	bash bench/run.sh

demo: ## run keter on a demo app (boots a sandbox systemd if PID 1 is not systemd)
	bash scripts/demo.sh

clean: ## remove build output
	rm -rf bin dist
