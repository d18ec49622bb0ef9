package pbjson_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/pbjson"
)

// kinds is a file of every shape the API's messages do not have yet: floats,
// bytes, maps of every key kind, oneofs, proto3 optional fields, enum aliases,
// nesting and the well-known types protojson encodes for pbjson.
const kinds = `
name: "pbjsontest/kinds.proto" package: "pbjsontest" syntax: "proto3"
dependency: ["google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/struct.proto", "google/protobuf/field_mask.proto"]
enum_type { name: "Color" options { allow_alias: true }
  value { name: "COLOR_UNSPECIFIED" number: 0 } value { name: "COLOR_RED" number: 1 }
  value { name: "COLOR_CRIMSON" number: 1 } value { name: "COLOR_BLUE" number: -2 } }
message_type { name: "All"
  field { name: "d" number: 1 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  field { name: "f" number: 2 label: LABEL_OPTIONAL type: TYPE_FLOAT }
  field { name: "b" number: 3 label: LABEL_OPTIONAL type: TYPE_BYTES }
  field { name: "i32" number: 4 label: LABEL_OPTIONAL type: TYPE_SINT32 }
  field { name: "u64" number: 5 label: LABEL_OPTIONAL type: TYPE_FIXED64 }
  field { name: "s64" number: 6 label: LABEL_OPTIONAL type: TYPE_SFIXED64 }
  field { name: "color" number: 7 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".pbjsontest.Color" }
  field { name: "colors" number: 8 label: LABEL_REPEATED type: TYPE_ENUM type_name: ".pbjsontest.Color" }
  field { name: "by_int" number: 9 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".pbjsontest.All.ByIntEntry" }
  field { name: "by_bool" number: 10 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".pbjsontest.All.ByBoolEntry" }
  field { name: "by_u64" number: 11 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".pbjsontest.All.ByU64Entry" }
  field { name: "by_name" number: 12 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".pbjsontest.All.ByNameEntry" }
  field { name: "text" number: 13 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
  field { name: "child" number: 14 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".pbjsontest.All" oneof_index: 0 }
  field { name: "maybe" number: 15 label: LABEL_OPTIONAL type: TYPE_INT64 oneof_index: 1 proto3_optional: true }
  field { name: "children" number: 16 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".pbjsontest.All" }
  field { name: "at" number: 17 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" }
  field { name: "ttl" number: 18 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Duration" }
  field { name: "doc" number: 19 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Struct" }
  field { name: "mask" number: 20 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.FieldMask" }
  field { name: "u32" number: 21 label: LABEL_OPTIONAL type: TYPE_UINT32 }
  field { name: "flag" number: 22 label: LABEL_OPTIONAL type: TYPE_BOOL }
  field { name: "times" number: 23 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" }
  nested_type { name: "ByIntEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".pbjsontest.Color" } }
  nested_type { name: "ByBoolEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_DOUBLE } }
  nested_type { name: "ByU64Entry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_UINT64 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_BYTES } }
  nested_type { name: "ByNameEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".pbjsontest.All" } }
  oneof_decl { name: "choice" } oneof_decl { name: "_maybe" } }
`

// messageTypes are every message of the API and of the kinds file.
func messageTypes(t testing.TB) []protoreflect.MessageDescriptor {
	var fdp descriptorpb.FileDescriptorProto
	require.NoError(t, prototext.Unmarshal([]byte(kinds), &fdp))
	// Plain is All without the fields protojson encodes for pbjson (Struct,
	// FieldMask): its messages take the wire path, All's the reflective one.
	plain := proto.CloneOf(fdp.GetMessageType()[0])
	plain.Name = proto.String("Plain")
	plain.Field = slices.DeleteFunc(plain.Field, func(f *descriptorpb.FieldDescriptorProto) bool {
		return f.GetName() == "doc" || f.GetName() == "mask"
	})
	for _, m := range append([]*descriptorpb.DescriptorProto{plain}, plain.GetNestedType()...) {
		for _, f := range m.GetField() {
			if strings.HasPrefix(f.GetTypeName(), ".pbjsontest.All") {
				f.TypeName = proto.String(strings.Replace(f.GetTypeName(), ".pbjsontest.All", ".pbjsontest.Plain", 1))
			}
		}
	}
	fdp.MessageType = append(fdp.MessageType, plain)
	file, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	require.NoError(t, err)
	var all []protoreflect.MessageDescriptor
	var walk func(protoreflect.MessageDescriptors)
	walk = func(mds protoreflect.MessageDescriptors) {
		for i := range mds.Len() {
			if md := mds.Get(i); !md.IsMapEntry() {
				all = append(all, md)
				walk(md.Messages())
			}
		}
	}
	for _, f := range []protoreflect.FileDescriptor{file, keywardv1.File_keyward_v1_keys_proto, keywardv1.File_keyward_v1_tokens_proto,
		keywardv1.File_keyward_v1_audit_proto, keywardv1.File_keyward_v1_revocations_proto, keywardv1.File_keyward_v1_policy_proto} {
		walk(f.Messages())
	}
	return all
}

// newMessage is a message of the type: the generated one when there is one.
func newMessage(md protoreflect.MessageDescriptor) protoreflect.Message {
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		return mt.New()
	}
	return dynamicpb.NewMessage(md)
}

// strs are strings protojson escapes, or refuses, in every way it can.
var strs = []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r\b\f", "\x00\x01\x1f\x7f", "é ü ß 日本 🔑",
	"\u2028\u2029 <script>&amp;", "invalid \xff utf-8", "\xc3", "keyward.keys/acme:read"}

// fill sets a random selection of m's fields to random values, depth deep at most.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		// Out of range rarely, or most messages would be refused.
		secs, nanos := []int64{0, 1, 1_700_000_000, -62135596800, 253402300799}, []int64{0, 1, 500_000_000, 123_000, 999_999_999}
		if m.Descriptor().Name() == "Duration" {
			secs = []int64{0, 1, 315576000000}
			if r.IntN(2) == 0 {
				secs, nanos = []int64{0, -1, -315576000000}, []int64{0, -1, -500_000_000, -999_999_999}
			}
		}
		if r.IntN(40) == 0 {
			secs, nanos = []int64{253402300800, -62135596801, -315576000001, 1, -1}, []int64{1_000_000_000, -1, 1, -1_000_000_000}
		}
		fds := m.Descriptor().Fields()
		m.Set(fds.ByNumber(1), protoreflect.ValueOfInt64(secs[r.IntN(len(secs))]))
		m.Set(fds.ByNumber(2), protoreflect.ValueOfInt32(int32(nanos[r.IntN(len(nanos))])))
		return
	case "google.protobuf.FieldMask", "google.protobuf.Struct":
		// protojson encodes these itself; only valid ones are of interest.
		v, err := structpb.NewStruct(map[string]any{"name": "x", "n": 1.5, "list": []any{true, nil}})
		if err != nil {
			panic(err)
		}
		var valid proto.Message = v
		if m.Descriptor().Name() == "FieldMask" {
			valid = &fieldmaskpb.FieldMask{Paths: []string{"name", "rate_limit.burst"}}
		}
		proto.Merge(m.Interface(), valid)
		return
	}
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if r.IntN(3) == 0 || (depth == 0 && fd.Message() != nil && !fd.IsMap()) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				if fd.Message() != nil {
					e := l.NewElement()
					fill(r, e.Message(), depth-1)
					l.Append(e)
				} else {
					l.Append(scalar(r, fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				k := scalar(r, fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					if depth == 0 {
						continue
					}
					v := mp.NewValue()
					fill(r, v.Message(), depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(r, fd.MapValue()))
				}
			}
		case fd.Message() != nil:
			v := m.NewField(fd)
			fill(r, v.Message(), depth-1)
			m.Set(fd, v)
		default:
			m.Set(fd, scalar(r, fd))
		}
	}
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	ints := []int64{0, 1, -1, 42, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64, 1 << 53, -(1 << 53) - 1}
	n := ints[r.IntN(len(ints))]
	floats := []float64{0, math.Copysign(0, -1), 1.5, -2.25, 1e21, 1e20, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.Inf(1), math.Inf(-1), math.NaN(), 3.4e38, 1e-45}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.StringKind:
		if r.IntN(40) == 0 { // mostly valid, or most messages would be refused
			return protoreflect.ValueOfString(strs[r.IntN(len(strs))])
		}
		return protoreflect.ValueOfString(strs[r.IntN(6)])
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(9))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(floats[r.IntN(len(floats))]))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(floats[r.IntN(len(floats))])
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if r.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(100 + r.IntN(5))) // unknown to the enum
		}
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	case protoreflect.MessageKind, protoreflect.GroupKind:
	}
	panic("no scalar of kind " + fd.Kind().String())
}

// requireSameAsProtojson: Marshal writes exactly what protojson does (its
// whitespace aside, which it varies on purpose), or fails with its error.
// It reports whether protojson encoded the message.
func requireSameAsProtojson(t testing.TB, m proto.Message) bool {
	t.Helper()
	want, wantErr := pbjson.Options.Marshal(m)
	got, err := pbjson.Marshal([]byte("prefix"), m)
	if wantErr != nil {
		require.EqualError(t, err, wantErr.Error(), "%v", m)
		return false
	}
	require.NoError(t, err, "%v", m)
	require.True(t, bytes.HasPrefix(got, []byte("prefix")), "appends")
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, want))
	require.Equal(t, compact.String(), string(got[len("prefix"):]), "%v", m) // compact too, then
	if pbjson.Wireable(m) {
		wire, ok := pbjson.MarshalWire(m)
		require.True(t, ok, "the wire path writes what protojson accepts: %v", m)
		require.Equal(t, compact.String(), string(wire), "%v", m)
	}
	return true
}

func TestMarshalMatchesProtojson(t *testing.T) {
	types := messageTypes(t)
	encoded := map[protoreflect.FullName]int{}
	const seeds = 300
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 1))
		for _, md := range types {
			m := newMessage(md)
			fill(r, m, 3)
			if requireSameAsProtojson(t, m.Interface()) {
				encoded[md.FullName()]++
			}
		}
	}
	// Refusals are compared too, but each type must mostly be encoded; the
	// wire path must be the one taken by the types it is for.
	for name, want := range map[protoreflect.FullName]bool{"pbjsontest.Plain": true, "pbjsontest.All": false,
		"keyward.v1.VerifyKeyResponse": true, "keyward.v1.Key": true, "keyward.v1.ListAuditEventsResponse": true} {
		var md protoreflect.MessageDescriptor
		for _, t := range types {
			if t.FullName() == name {
				md = t
			}
		}
		require.NotNil(t, md, name)
		assert.Equal(t, want, pbjson.Wireable(newMessage(md).Interface()), "wire path for %s", name)
	}
	for _, md := range types {
		require.Greater(t, encoded[md.FullName()], seeds/2, "%s encoded %d times of %d", md.FullName(), encoded[md.FullName()], seeds)
	}
}

func TestMarshalEdges(t *testing.T) {
	requireSameAsProtojson(t, (*keywardv1.Key)(nil))
	requireSameAsProtojson(t, &keywardv1.Key{})
	requireSameAsProtojson(t, timestamppb.New(timestamppb.Now().AsTime()))
	got, err := pbjson.Marshal(nil, nil)
	require.NoError(t, err)
	require.Equal(t, "{}", string(got))
}

func FuzzMarshal(f *testing.F) {
	types := messageTypes(f)
	f.Add(uint64(1), uint16(0))
	f.Fuzz(func(t *testing.T, seed uint64, which uint16) {
		m := newMessage(types[int(which)%len(types)])
		fill(rand.New(rand.NewPCG(seed, 2)), m, 4)
		requireSameAsProtojson(t, m.Interface())
	})
}

var sink []byte

func BenchmarkMarshal(b *testing.B) {
	m := verifyKeyResponse()
	b.Run("pbjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink, _ = pbjson.Marshal(sink[:0], m)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink, _ = pbjson.Options.MarshalAppend(sink[:0], m)
		}
	})
}

// verifyKeyResponse is what a valid VerifyKey answers over REST.
func verifyKeyResponse() *keywardv1.VerifyKeyResponse {
	now := timestamppb.Now()
	return &keywardv1.VerifyKeyResponse{
		Valid: true, Reason: keywardv1.VerificationReason_VERIFICATION_REASON_OK, Message: "the key is valid",
		Key: &keywardv1.Key{KeyId: "kw_01HZX3Q4RCW8VJ7N5T2M6B9D0F", Name: "pos terminal 12", Owner: "acme",
			Environment: keywardv1.Environment_ENVIRONMENT_LIVE, State: keywardv1.KeyState_KEY_STATE_ACTIVE,
			Roles: []string{"cashier"}, Permissions: []string{"orders:create", "orders:read"},
			AllowedCidrs: []string{"10.0.0.0/8"}, AllowedCountries: []string{"DE", "AT"},
			Metadata: map[string]string{"store": "berlin-1"}, CreateTime: now, ExpireTime: now},
		EffectivePermissions: []string{"orders:create", "orders:read", "payments:read"},
		ClientIp:             "10.1.2.3", ClientCountry: "DE",
	}
}
