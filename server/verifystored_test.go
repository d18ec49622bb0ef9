package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// The key VerifyKey answers with (now rebuilt from the compact cached key and the
// profile it shares) is the key GetKey reads from the store, for two keys holding
// one profile, before and after one of them is rotated (its old secret in its
// grace period) and the other updated.
func TestVerifiedKeyIsTheStoredKey(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	req := &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"orders:create"}, AllowedCidrs: []string{"127.0.0.0/8", "::1/128"}, Metadata: map[string]string{"team": "a", "site": "b"},
		RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 1000, Burst: 1000}, Quota: &keywardv1.Quota{Limit: 1000, Period: keywardv1.QuotaPeriod_QUOTA_PERIOD_DAY},
		AllowedAudiences: []string{"aud"}, MaxTokenTtl: durationpb.New(time.Minute), ExpireTime: timestamppb.New(time.Now().Add(time.Hour))}
	a, err := c.CreateKey(ctx, req)
	require.NoError(t, err)
	req.Name = "till-2"
	b, err := c.CreateKey(ctx, req)
	require.NoError(t, err)

	check := func(secret, id, step string) {
		t.Helper()
		v, err := c.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: secret})
		require.NoError(t, err)
		require.True(t, v.GetValid(), "%s: %s", step, v.GetMessage())
		resp, err := c.GetKey(ctx, &keywardv1.GetKeyRequest{KeyId: id})
		require.NoError(t, err)
		got := resp.GetKey()
		verified := proto.Clone(v.GetKey()).(*keywardv1.Key)
		verified.LastUsedTime, got.LastUsedTime = nil, nil // written in the background
		assert.True(t, proto.Equal(got, verified), "%s: VerifyKey answers\n%v\nGetKey reads\n%v", step, verified, got)
	}
	check(a.GetSecret(), a.GetKey().GetKeyId(), "a")
	check(b.GetSecret(), b.GetKey().GetKeyId(), "b")

	rot, err := c.RotateKey(ctx, &keywardv1.RotateKeyRequest{KeyId: a.GetKey().GetKeyId(), GracePeriod: durationpb.New(time.Hour)})
	require.NoError(t, err)
	check(a.GetSecret(), a.GetKey().GetKeyId(), "a's old secret in its grace period")
	check(rot.GetSecret(), a.GetKey().GetKeyId(), "a's new secret")
	check(b.GetSecret(), b.GetKey().GetKeyId(), "b after a's rotation")
}
