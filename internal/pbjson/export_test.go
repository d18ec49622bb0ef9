package pbjson

import "google.golang.org/protobuf/proto"

// MarshalWire is the wire path alone, for the tests: ok false when the type
// cannot take it or the path gave up (and Marshal would fall back).
func MarshalWire(m proto.Message) ([]byte, bool) {
	md := m.ProtoReflect().Descriptor()
	if !wireable(md) {
		return nil, false
	}
	return marshalWire(nil, m, planOf(md))
}

// Wireable tells the types the wire path takes.
func Wireable(m proto.Message) bool { return wireable(m.ProtoReflect().Descriptor()) }
