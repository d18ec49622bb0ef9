# Keyward: `make run` serves on the embedded store, `make test` runs every test.
GO ?= go
DATA_DIR ?= ./keyward-data

.PHONY: run build test test-e2e screenshot test-short bench bench-go fuzz generate lint fmt-check check-generated ci clean

run: ## serve gRPC on 127.0.0.1:7070 and REST on 127.0.0.1:8080, embedded store in $(DATA_DIR)
	$(GO) run ./cmd/keyward serve --data-dir $(DATA_DIR)

build: ## build bin/keyward
	$(GO) build -trimpath -o bin/keyward ./cmd/keyward

# A package's tests may take 20 minutes before they fail with every goroutine's stack:
# the server package takes under a minute under the race detector on 2 idle cores but
# several times that beside a CPU hog, too close to go test's default of 10.
TEST_TIMEOUT ?= 20m
# Four parallel tests at once (go test's default is one per core): many of them wait
# on another instance's poll or a store that is down, and would hold a core idle.
TEST_PARALLEL ?= 4
# The race detector also turns on checkptr, the check of every unsafe pointer
# conversion. It is kept for Keyward's code and every library but the pure-Go SQLite
# (modernc.org), whose C-translated code converts pointers on every row and spent a
# fifth of the server tests' CPU in the check.
RACE_FLAGS ?= -race -gcflags='modernc.org/...=-d=checkptr=0'
# A race-instrumented program sleeps a second before it exits, so that reports of
# other threads can be printed; a test binary has failed the test that raced by then.
export GORACE ?= atexit_sleep_ms=0

# The slowest packages first: go test starts packages in the order they are named,
# and the server's tests, started last, ran alone for half a minute at the end.
TEST_PKGS ?= ./server/ ./repository/mongodb/ ./service/audit/ ./...

test: ## all tests, with the race detector; the storage suite runs on the embedded store and on FerretDB (or MongoDB when KEYWARD_TEST_MONGODB_URI is set)
	$(GO) test $(RACE_FLAGS) -count=1 -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $(TEST_PKGS)

test-e2e: ## the admin panel in headless Chromium (Debian's chromium package)
	$(GO) test -tags e2e -count=1 -run TestAdminPanel ./server/admin/

screenshot: ## the admin panel test, writing the README's docs/admin-keys.png
	KEYWARD_UPDATE_SCREENSHOT=1 $(GO) test -tags e2e -count=1 -run TestAdminPanel ./server/admin/

test-short: ## all tests without the race detector
	$(GO) test -count=1 -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $(TEST_PKGS)

bench: ## load harness: a real server on loopback, every scenario against same-run baselines, targets checked; results in bench/results and the README's latest-run section (it prints each phase's wall time)
	$(GO) run ./cmd/keyward-bench
	$(GO) run ./cmd/keyward-bench -readme README.md

bench-go: ## the Go benchmarks (in-process hot paths, store, transports), ns/op and allocations
	$(GO) test -run '^$$' -bench . -benchmem ./service/... ./client/... ./repository/embedded/...
	$(GO) test -run '^$$' -bench 'VerifyKey' -benchmem ./server/

FUZZTIME ?= 30s
fuzz: ## fuzz the parsers, token validation and the REST handler, FUZZTIME each (seed corpora are in testdata/fuzz)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./service/apikey/
	$(GO) test -run '^$$' -fuzz '^FuzzParseOpaque$$' -fuzztime $(FUZZTIME) ./service/apikey/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./service/permission/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateToken$$' -fuzztime $(FUZZTIME) ./service/tokens/
	$(GO) test -run '^$$' -fuzz '^FuzzCanonicalCIDRs$$' -fuzztime $(FUZZTIME) ./service/keys/
	$(GO) test -run '^$$' -fuzz '^FuzzCountry$$' -fuzztime $(FUZZTIME) ./service/geoip/
	$(GO) test -run '^$$' -fuzz '^FuzzREST$$' -fuzztime $(FUZZTIME) ./server/

generate: ## regenerate gen/ from proto/ with the pinned tools
	$(GO) tool buf generate

# golangci-lint is pinned in its own module, so that its dependencies stay out of go.mod.
GOLANGCI_LINT ?= $(GO) tool -modfile=tools/golangci-lint/go.mod golangci-lint

lint: ## buf lint, go vet, gofmt, golangci-lint (.golangci.yml)
	$(GO) tool buf lint
	$(GO) vet ./...
	@$(MAKE) --no-print-directory fmt-check
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

check-generated: generate ## fail when gen/ is not what proto/ generates
	@git add -N gen >/dev/null 2>&1 || true
	@if ! git diff --quiet -- gen; then \
		echo "gen/ is stale: run 'make generate' and commit the result"; git diff --stat -- gen; exit 1; fi

ci: lint check-generated test test-e2e

clean:
	rm -rf bin
