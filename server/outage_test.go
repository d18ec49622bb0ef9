package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
)

// The store stops for a few seconds: calls that need it answer UNAVAILABLE quickly
// with a clear message, cached verifications keep working, audit events wait and
// are written afterwards, and Keyward reconnects by itself.
func TestStoreOutage(t *testing.T) {
	if !mongotest.IsFerretDB() {
		t.Skip("needs a store the test can stop; KEYWARD_TEST_MONGODB_URI points at an external one")
	}
	db := mongotest.StartInstance(t)
	kw := servertest.Start(t, servertest.WithMongoDB(db.URI(), "outage"))
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	k, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	require.NoError(t, err)
	v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
	require.NoError(t, err)
	require.True(t, v.GetValid())

	db.Stop()
	// Cached verifications (the caller's and the verified key's) keep working.
	for range 20 {
		v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
		require.NoError(t, err, "a cached verification does not need the store")
		assert.True(t, v.GetValid())
	}
	// What needs the store answers UNAVAILABLE, promptly, without driver detail.
	start := time.Now()
	_, err = ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Equal(t, "the store is unavailable; retry later", status.Convert(err).Message())
	assert.Less(t, time.Since(start), 15*time.Second, "never hangs")
	time.Sleep(2 * time.Second)

	db.Restart()
	require.Eventually(t, func() bool {
		_, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "after", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "Keyward reconnects by itself")

	// The audit events of the outage were held and written afterwards: the 20
	// verifications made while the store was down are all there.
	events := auditEvents(t, kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_VerifyKey_FullMethodName}, 21)
	assert.Len(t, events, 21)
}
