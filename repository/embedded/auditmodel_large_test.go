package embedded

import "testing"

// The model test of audit_test.go with batches larger than a segment (split
// within one insert), ids interleaving over seconds across batches, and long
// retried tails.
func TestAuditMatchesAModelWithBatchesBeyondASegment(t *testing.T) {
	t.Parallel()
	checkAgainstModel(t, modelRun{seeds: 1, stream: 99, jitterMS: 2000, steps: 25, maxBatch: 5000, maxTail: 3000})
}
