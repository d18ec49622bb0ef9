package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's latest-run section is what the generator makes of the committed
// results: neither can change without the other.
func TestReadmeLatestRunMatchesResults(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	r, err := loadReport(filepath.Join(root, "bench", "results", "latest.json"))
	require.NoError(t, err)
	want, err := spliceReadme(readme, r.readmeSection())
	require.NoError(t, err)
	_, section, _ := strings.Cut(string(readme), readmeBegin)
	section, _, _ = strings.Cut(section, readmeEnd)
	require.Equal(t, r.readmeSection(), section,
		"README.md's latest-run section differs from bench/results/latest.json: run go run ./cmd/keyward-bench -readme README.md")
	assert.Equal(t, string(want), string(readme), "and nothing else in README.md changes")
}

func TestReadmeSectionCarriesTheRunsFigures(t *testing.T) {
	t.Parallel()
	r := &Report{Date: "2026-01-02", Machine: "test CPU", CPUs: 2, Duration: "3s", WallSeconds: 300,
		Load: []Result{
			{Scenario: grpcBaseline, Concurrency: 16, Requests: 1000, RPS: 20000, P99ms: 2, CPUSeconds: 0.04},
			{Scenario: "grpc VerifyKey, cache hit", Baseline: grpcBaseline, Concurrency: 16, Requests: 1000, RPS: 15000, P99ms: 3,
				CPUSeconds: 0.06, RPSRatio: 0.75},
			{Scenario: "rest VerifyKey, cache hit", Baseline: restBaseline, Concurrency: 16, Requests: 1000, RPS: 7500, P99ms: 6,
				CPUSeconds: 0.12},
		},
		PeerComparisons: []PeerComparison{{Peer: "openbao lookup", Keyward: "rest ValidateToken ES256", Concurrency: 16,
			PeerRPS: 2000, KeywardRPS: 6000, RPSRatio: 3}},
		Targets: []Target{{Name: "grpc ValidateToken ES256 vs openbao lookup, c=16", Want: "≥ 10× req/s, lower p99", Got: "4.0×", Met: false},
			{Name: "other", Met: true}},
	}
	r.byName = map[string]Result{}
	for _, res := range r.Load {
		r.byName[res.Scenario+"16"] = res
	}
	s := r.readmeSection()
	for _, want := range []string{"2026-01-02, test CPU, 2 CPUs", "took 300 s", "| 15000", "REST vs gRPC, VerifyKey at c=16: 50% of the req/s, 2.00× the server CPU per call",
		"| openbao lookup", "3.00×", "grpc ValidateToken ES256 vs openbao lookup, c=16", "1 of 2 targets met"} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "No peer was measured")
}

func TestSpliceReadmeNeedsOnePairOfMarkers(t *testing.T) {
	t.Parallel()
	out, err := spliceReadme([]byte("a\n"+readmeBegin+"old\n"+readmeEnd+"b\n"), "new\n")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+readmeBegin+"new\n"+readmeEnd+"b\n", string(out))
	for name, readme := range map[string]string{
		"none":      "a\n",
		"no end":    readmeBegin + "old\n",
		"reversed":  readmeEnd + readmeBegin,
		"two pairs": readmeBegin + readmeEnd + readmeBegin + readmeEnd,
	} {
		_, err := spliceReadme([]byte(readme), "new\n")
		assert.Error(t, err, name)
	}
}
