package mongodb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/mongodb"
)

// eventID makes a time-ordered event id the way the service does.
func eventID(t time.Time, n int) string {
	return fmt.Sprintf("%016x%08x", t.UnixNano(), n)
}

// TestStoredAuditEventDocument pins the stored shape of an audit event: snake_case
// fields, time a BSON date, latency int64 nanoseconds, headers as {k, v} pairs
// sorted by k (header names may contain "." or start with "$"), empty fields
// absent; an event of an authenticated call in audit_events, any other in
// audit_events_unauthenticated, the kind being the collection.
func TestStoredAuditEventDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	audit := s.Audit()
	full := &repository.AuditEvent{
		ID: eventID(stamp, 1), Time: stamp, RequestID: "req-1", Method: "/keyward.v1.KeyService/VerifyKey",
		HTTPMethod: "POST", HTTPRoute: "/v1/keys:verify", CallerKeyID: "key-1", TokenID: "jti-1",
		Subject: "key-2", ClientIP: "2001:db8::1", UserAgent: "curl/8",
		Headers: map[string]string{"x.forwarded.for": "10.0.0.1", "$where": "1", "b": "", "a.b.$c": "x"},
		Code:    "PERMISSION_DENIED", HTTPStatus: 403, DenialReason: "lacks permission",
		Latency: 1500 * time.Microsecond, Authenticated: true,
		Throttled: true, Count: 37, EndTime: stamp.Add(time.Minute),
	}
	sparse := &repository.AuditEvent{ID: eventID(stamp, 2), Time: stamp, Method: "m", Code: "OK"}
	require.NoError(t, audit.InsertAuditEvents(ctx, []*repository.AuditEvent{full, sparse}))

	raw, types := storedTypes(t, s, mongodb.AuditCollection, full.ID)
	assert.Equal(t, map[string]bson.Type{
		"_id":           bson.TypeString,
		"time":          bson.TypeDateTime,
		"request_id":    bson.TypeString,
		"method":        bson.TypeString,
		"http_method":   bson.TypeString,
		"http_route":    bson.TypeString,
		"caller_key_id": bson.TypeString,
		"token_id":      bson.TypeString,
		"subject":       bson.TypeString,
		"client_ip":     bson.TypeString,
		"user_agent":    bson.TypeString,
		"headers":       bson.TypeArray,
		"code":          bson.TypeString,
		"http_status":   bson.TypeInt32,
		"denial_reason": bson.TypeString,
		"latency":       bson.TypeInt64,
		"throttled":     bson.TypeBoolean,
		"count":         bson.TypeInt64,
		"end_time":      bson.TypeDateTime,
	}, types)
	assert.Equal(t, int64(1_500_000), raw.Lookup("latency").Int64(), "latency is in nanoseconds")
	assert.True(t, stamp.Equal(raw.Lookup("time").Time()))

	var headers []struct {
		K string `bson:"k"`
		V string `bson:"v"`
	}
	require.NoError(t, raw.Lookup("headers").Unmarshal(&headers))
	var names []string
	for _, h := range headers {
		names = append(names, h.K)
		assert.Equal(t, full.Headers[h.K], h.V, h.K)
	}
	assert.Equal(t, []string{"$where", "a.b.$c", "b", "x.forwarded.for"}, names, "pairs sorted by name")

	_, types = storedTypes(t, s, mongodb.UnauthenticatedAuditCollection, sparse.ID)
	assert.Equal(t, map[string]bson.Type{
		"_id":    bson.TypeString,
		"time":   bson.TypeDateTime,
		"method": bson.TypeString,
		"code":   bson.TypeString,
	}, types, "empty fields are not stored")

	got, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 10, "")
	require.NoError(t, err)
	assert.Equal(t, []*repository.AuditEvent{sparse, full}, got, "both round-trip; no headers read back as nil")
}

// TestStoredKeyEventDocument pins the stored shape of a key event.
func TestStoredKeyEventDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	full := &repository.KeyEvent{ID: eventID(stamp, 1), KeyID: "key-1", Action: "updated", Time: stamp,
		ActorKeyID: "admin", ActorIP: "10.0.0.1", Reason: "why", ChangedFields: []string{"name"}}
	sparse := &repository.KeyEvent{ID: eventID(stamp, 2), KeyID: "key-1", Action: "created", Time: stamp}
	require.NoError(t, s.Audit().AppendKeyEvent(ctx, full))
	require.NoError(t, s.Audit().AppendKeyEvent(ctx, sparse))

	_, types := storedTypes(t, s, mongodb.KeyEventsCollection, full.ID)
	assert.Equal(t, map[string]bson.Type{
		"_id":            bson.TypeString,
		"key_id":         bson.TypeString,
		"action":         bson.TypeString,
		"time":           bson.TypeDateTime,
		"actor_key_id":   bson.TypeString,
		"actor_ip":       bson.TypeString,
		"reason":         bson.TypeString,
		"changed_fields": bson.TypeArray,
	}, types)
	_, types = storedTypes(t, s, mongodb.KeyEventsCollection, sparse.ID)
	assert.Equal(t, map[string]bson.Type{
		"_id":    bson.TypeString,
		"key_id": bson.TypeString,
		"action": bson.TypeString,
		"time":   bson.TypeDateTime,
	}, types)

	got, err := s.Audit().ListKeyEvents(ctx, "key-1", 10, "")
	require.NoError(t, err)
	assert.Equal(t, []*repository.KeyEvent{full, sparse}, got)
}
