//go:build !race

// The race detector makes sync.Pool drop items at random, so this runs without it.

package audit_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/service/audit"
)

// Correlation, on every request's path, allocates only its result.
func TestCorrelationAllocatesOnlyItsResult(t *testing.T) {
	a := audit.New(newAuditStore(t), audit.Config{HMACKey: []byte("k")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	secret := "Bearer kw_live_abcdefghijklmnop_xyz"
	assert.LessOrEqual(t, testing.AllocsPerRun(200, func() { _ = a.Correlation(secret) }), 1.0)
}
