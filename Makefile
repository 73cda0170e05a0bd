# knast build, test and benchmark entry points. `make test` is the one test command (CI runs it).
# Run as root: the runtime and integration tests create namespaces, mounts and cgroups.

# sudo's secure_path usually lacks Go: fall back to the standard install location.
GO    ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT ?= $(dir $(GO))gofmt
BIN   ?= bin/knast
# Whole-suite bound per package binary; CI's budget is 60 minutes for install + build + tests.
TEST_TIMEOUT ?= 20m
TEST_FLAGS   ?=
BENCH_FLAGS  ?=
# bench/exec, bench/ctr, bench/cni, bench/pull and bench/build take their own flags (see each -h).
BENCH_EXEC_FLAGS  ?=
BENCH_CTR_FLAGS   ?=
BENCH_CNI_FLAGS   ?=
BENCH_PULL_FLAGS  ?=
BENCH_BUILD_FLAGS ?=
# Seconds per fuzz target in `make test` (hardening/fuzz.sh); the hardening suite prints their executions.
FUZZ_TIME    ?= 20
FUZZ_SUMMARY ?= $(or $(TMPDIR),/tmp)/knast-fuzz-summary
HARDENING_LOG ?= $(or $(TMPDIR),/tmp)/knast-hardening.log

export GOTOOLCHAIN ?= local

.PHONY: all build test conformance fuzz hardening check-root fmt-check vet vet-freebsd quickstart bench clean

all: build

# The nsenter and seccomp packages are cgo: the Linux build needs gcc, pkg-config and libseccomp-dev.
# The binary is linked statically (libc and libseccomp included; pure-Go DNS and user lookups): every
# knast process, and every container's init, skips the dynamic loader, about a millisecond per start.
# testutil.BuildKnast builds the test binaries with the same flags.
BUILD_FLAGS ?= -trimpath -tags netgo,osusergo -ldflags=-extldflags=-static
build:
	CGO_ENABLED=1 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/knast

# -p 1: the root tests of different packages share host-wide state (cgroup paths named after container
# IDs, mounts, containerd and podman daemons); one test binary at a time keeps them from colliding.
# The hardening suite runs on its own (after the fuzz targets) so that its summary is printed.
test: check-root build fmt-check vet vet-freebsd
	CGO_ENABLED=1 $(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $$($(GO) list ./... | grep -v /integration/hardening$$)
	$(MAKE) hardening
	$(MAKE) conformance

fuzz:
	KNAST_FUZZ_SUMMARY=$(FUZZ_SUMMARY) GO=$(GO) hardening/fuzz.sh $(FUZZ_TIME)

# Crash injection, concurrent clients, hostile images and configs, escapes; prints the summary.
hardening: fuzz
	@echo "== integration/hardening (log: $(HARDENING_LOG))"
	@KNAST_FUZZ_SUMMARY=$(FUZZ_SUMMARY) CGO_ENABLED=1 $(GO) test -v -p 1 -count=1 -timeout $(TEST_TIMEOUT) ./integration/hardening >$(HARDENING_LOG) 2>&1; rc=$$?; \
	grep -E '^(--- (FAIL|SKIP)|FAIL|ok)' $(HARDENING_LOG); \
	sed -n '/=== knast hardening summary ===/,$$p' $(HARDENING_LOG) | grep -v '^ok'; \
	if [ $$rc -ne 0 ]; then tail -n 80 $(HARDENING_LOG); fi; exit $$rc

# The OCI runtime-tools validation suite, knast beside runc: fails on a test file runc passes and knast
# does not. Needs the shared harness next to the checkout (CI has it); skipped with a note otherwise.
conformance: build
	@if [ -x ../shared/conformance/run.sh ] || [ -f ../shared/conformance/run.sh ]; then \
		bash conformance/run.sh; \
	else \
		echo "conformance: ../shared/conformance not found next to the checkout: not run"; \
	fi

check-root:
	@[ "$$(id -u)" = 0 ] || echo "make: warning: not root; tests that need root will skip (use: sudo make test)" >&2

fmt-check:
	@files=$$($(GOFMT) -l $$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*')); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	CGO_ENABLED=1 $(GO) vet ./...

# FreeBSD is cross-built without cgo (no FreeBSD C toolchain here): vetted and built for amd64 and arm64,
# and the test binaries of the FreeBSD packages compiled (their encoders' tests also run on Linux).
FREEBSD_PKGS = ./internal/container/ ./internal/container/freebsd/ ./internal/network/ ./internal/network/bsdnet/ ./cmd/knast/
vet-freebsd:
	@for arch in amd64 arm64; do \
		echo "GOOS=freebsd GOARCH=$$arch: build, vet, test -c"; \
		GOOS=freebsd GOARCH=$$arch CGO_ENABLED=0 $(GO) build ./... && \
		GOOS=freebsd GOARCH=$$arch CGO_ENABLED=0 $(GO) vet ./... && \
		for p in $(FREEBSD_PKGS); do GOOS=freebsd GOARCH=$$arch CGO_ENABLED=0 $(GO) test -c -o /dev/null $$p || exit 1; done || exit 1; \
	done

quickstart: build
	GO=$(GO) ./scripts/quickstart.sh $(BIN)

bench: build
	CGO_ENABLED=1 $(GO) run ./bench/lifecycle -knast $(BIN) $(BENCH_FLAGS)
	CGO_ENABLED=1 $(GO) run ./bench/exec -knast $(BIN) $(BENCH_EXEC_FLAGS)
	CGO_ENABLED=1 $(GO) run ./bench/ctr -knast $(BIN) $(BENCH_CTR_FLAGS)
	CGO_ENABLED=1 $(GO) run ./bench/cni -knast $(BIN) $(BENCH_CNI_FLAGS)
	CGO_ENABLED=1 $(GO) run ./bench/pull -knast $(BIN) $(BENCH_PULL_FLAGS)
	CGO_ENABLED=1 $(GO) run ./bench/build -knast $(BIN) $(BENCH_BUILD_FLAGS)

clean:
	rm -rf bin
