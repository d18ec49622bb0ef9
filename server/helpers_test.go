package server_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/service/apikey"
)

// marshal encodes a request body the way a REST client would: proto messages with
// their proto field names, anything else as plain JSON.
func marshal(t *testing.T, v any) string {
	t.Helper()
	if m, ok := v.(proto.Message); ok {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func unmarshalProto(b []byte, v any) error {
	return protojson.Unmarshal(b, v.(proto.Message))
}

// parts splits a well-formed secret into environment, key id and random part.
func parts(t *testing.T, secret string) (env, id, random string) {
	t.Helper()
	p, err := apikey.Parse(secret)
	require.NoError(t, err)
	start := len("kw_live_") + apikey.IDLen + 1
	return p.Env, p.KeyID, secret[start : apikey.Len-6]
}

// forgeWithID puts a secret's random part under another key id, with a valid checksum.
func forgeWithID(t *testing.T, secret, id string) string {
	env, _, random := parts(t, secret)
	s, err := apikey.Assemble(env, id, random)
	require.NoError(t, err)
	return s
}

// relabel moves a secret to another environment, with a valid checksum.
func relabel(t *testing.T, secret, env string) string {
	_, id, random := parts(t, secret)
	s, err := apikey.Assemble(env, id, random)
	require.NoError(t, err)
	return s
}

func flipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func decodeB64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func mongoIsFerret() bool { return mongotest.IsFerretDB() }
