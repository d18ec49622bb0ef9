package pbjson

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The wire path: a message of a type whose every field can be read back from
// its binary encoding (proto3 scalars, enums, strings, bytes, messages of such
// types, maps, Timestamp and Duration) is marshalled by protobuf's fast binary
// encoder and then written from those bytes, field by field in declaration
// order. Reading the wire form costs a fraction of reading the message through
// reflection; the output is the same (the tests compare both with protojson).

// wireable reports whether messages of md can take the wire path.
func wireable(md protoreflect.MessageDescriptor) bool {
	if v, ok := wireables.Load(md); ok {
		return v.(bool) //nolint:forcetypeassert // the map holds nothing else
	}
	ok := wireableWalk(md, map[protoreflect.MessageDescriptor]bool{})
	wireables.Store(md, ok)
	return ok
}

var wireables sync.Map // protoreflect.MessageDescriptor → bool

func wireableWalk(md protoreflect.MessageDescriptor, seen map[protoreflect.MessageDescriptor]bool) bool {
	if seen[md] {
		return true // decided by the walk that got here first
	}
	seen[md] = true
	p := planOf(md)
	switch {
	case p.wkt != notWellKnown:
		return true
	case p.delegate, md.ParentFile() == nil, md.ParentFile().Syntax() != protoreflect.Proto3:
		return false
	}
	for i := range p.fields {
		f := &p.fields[i]
		if vm := f.value.Message(); vm != nil && !wireableWalk(vm, seen) {
			return false
		}
	}
	return true
}

// byNumber finds a plan's field by its number.
func (p *plan) byNumber(n protowire.Number) *field {
	if int(n) < len(p.dense) {
		if i := p.dense[n]; i > 0 {
			return &p.fields[i-1]
		}
		return nil
	}
	if i, ok := p.sparse[n]; ok {
		return &p.fields[i]
	}
	return nil
}

// index fills the plan's lookup by number.
func (p *plan) index() {
	maxDense := 0
	for i := range p.fields {
		if n := int(p.fields[i].fd.Number()); n < 64 {
			maxDense = max(maxDense, n+1)
		}
	}
	p.dense = make([]int, maxDense)
	for i := range p.fields {
		n := p.fields[i].fd.Number()
		if int(n) < maxDense {
			p.dense[n] = i + 1
			continue
		}
		if p.sparse == nil {
			p.sparse = map[protowire.Number]int{}
		}
		p.sparse[n] = i
	}
}

// occurrence is one field value as found in the wire form.
type occurrence struct {
	f   *field
	typ protowire.Type
	num uint64 // varint, fixed32 and fixed64 values
	raw []byte // length-delimited values
}

var wireBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// marshalWire appends m's JSON from its wire form; not ok when the wire path
// cannot write it (a value protojson refuses, say), and the caller falls back.
func marshalWire(b []byte, m proto.Message, p *plan) ([]byte, bool) {
	bufp := wireBuffers.Get().(*[]byte) //nolint:forcetypeassert // the pool holds nothing else
	defer wireBuffers.Put(bufp)
	wire, err := proto.MarshalOptions{}.MarshalAppend((*bufp)[:0], m)
	if err != nil {
		return b, false
	}
	*bufp = wire[:0]
	return appendWireMessage(b, p, wire)
}

func appendWireMessage(b []byte, p *plan, wire []byte) ([]byte, bool) {
	switch p.wkt {
	case timestampType, durationType:
		var secs, nanos int64
		for len(wire) > 0 {
			var o occurrence
			num, rest, ok := consumeField(wire, &o)
			if !ok || o.typ != protowire.VarintType {
				return b, false
			}
			wire = rest
			switch num {
			case 1:
				secs = int64(o.num) //nolint:gosec // int64 on the wire
			case 2:
				nanos = int64(int32(o.num)) //nolint:gosec // int32 on the wire
			default: // no other field
			}
		}
		if p.wkt == timestampType {
			return appendTimestamp(b, secs, nanos)
		}
		return appendDuration(b, secs, nanos)
	default: // a message of fields
	}
	var local [48]occurrence
	occ := local[:0]
	for len(wire) > 0 {
		var o occurrence
		num, rest, ok := consumeField(wire, &o)
		if !ok {
			return b, false
		}
		wire = rest
		if o.f = p.byNumber(num); o.f != nil {
			occ = append(occ, o)
		}
	}
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		last := -1
		for j := range occ {
			if occ[j].f == f {
				last = j
			}
		}
		if last < 0 && f.skipUnset {
			continue
		}
		b, first = appendMember(b, first, f), false
		var ok bool
		switch {
		case f.list:
			b, ok = appendWireList(b, f, occ)
		case f.isMap:
			b, ok = appendWireMap(b, f, occ)
		case last < 0 && f.nullUnset:
			b, ok = append(b, "null"...), true
		case last < 0:
			b, ok = appendDefault(b, f.value, f.enum)
		default:
			b, ok = appendWireValue(b, f.value, f.enum, &occ[last])
		}
		if !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func appendWireList(b []byte, f *field, occ []occurrence) ([]byte, bool) {
	b = append(b, '[')
	n := 0
	for j := range occ {
		o := &occ[j]
		if o.f != f {
			continue
		}
		if o.typ == protowire.BytesType && packable(f.value.Kind()) {
			var ok bool
			if b, n, ok = appendPacked(b, f, o.raw, n); !ok {
				return b, false
			}
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		var ok bool
		if b, ok = appendWireValue(b, f.value, f.enum, o); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

func packable(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
		return false
	default:
		return true
	}
}

// appendPacked writes the elements of a packed repeated scalar, n of the
// list's elements written before them.
func appendPacked(b []byte, f *field, raw []byte, n int) ([]byte, int, bool) {
	for len(raw) > 0 {
		o := occurrence{f: f}
		var k int
		switch f.value.Kind() {
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			var v uint32
			v, k = protowire.ConsumeFixed32(raw)
			o.typ, o.num = protowire.Fixed32Type, uint64(v)
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			o.num, k = protowire.ConsumeFixed64(raw)
			o.typ = protowire.Fixed64Type
		default:
			o.num, k = protowire.ConsumeVarint(raw)
			o.typ = protowire.VarintType
		}
		if k < 0 {
			return b, n, false
		}
		raw = raw[k:]
		if n > 0 {
			b = append(b, ',')
		}
		n++
		var ok bool
		if b, ok = appendWireValue(b, f.value, f.enum, &o); !ok {
			return b, n, false
		}
	}
	return b, n, true
}

// mapEntry is one entry of a map field: its key and its value's occurrence.
type mapEntry struct {
	key   protoreflect.MapKey
	value occurrence
	set   bool // the value was on the wire
}

func appendWireMap(b []byte, f *field, occ []occurrence) ([]byte, bool) {
	keyFd, valFd := f.fd.MapKey(), f.fd.MapValue()
	var entries []mapEntry
	for j := range occ {
		o := &occ[j]
		if o.f != f {
			continue
		}
		if o.typ != protowire.BytesType {
			return b, false
		}
		e := mapEntry{key: keyFd.Default().MapKey(), value: occurrence{f: f}}
		wire := o.raw
		for len(wire) > 0 {
			v := occurrence{f: f}
			num, rest, ok := consumeField(wire, &v)
			if !ok {
				return b, false
			}
			wire = rest
			switch num {
			case 1:
				k, ok := wireKey(keyFd, &v)
				if !ok {
					return b, false
				}
				e.key = k
			case 2:
				e.value, e.set = v, true
			default: // an entry has no other field
			}
		}
		// A later entry of the same key replaces an earlier one.
		if i := slices.IndexFunc(entries, func(x mapEntry) bool { return compareKeys(x.key, e.key) == 0 }); i >= 0 {
			entries[i] = e
		} else {
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(x, y mapEntry) int { return compareKeys(x.key, y.key) })
	b = append(b, '{')
	for i := range entries {
		e := &entries[i]
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendString(b, e.key.String()); !ok {
			return b, false
		}
		b = append(b, ':')
		switch {
		case !e.set && valFd.Message() != nil:
			b, ok = appendWireMessage(b, planOf(valFd.Message()), nil)
		case !e.set:
			b, ok = appendDefault(b, valFd, f.enum)
		default:
			b, ok = appendWireValue(b, valFd, f.enum, &e.value)
		}
		if !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// consumeField reads the field at the start of wire into o (all but o.f, left
// to the caller) and returns its number and the bytes after it; not ok when
// the field is malformed or a group, which the wire path leaves to the fallback.
func consumeField(wire []byte, o *occurrence) (protowire.Number, []byte, bool) {
	num, typ, n := protowire.ConsumeTag(wire)
	if n < 0 {
		return 0, nil, false
	}
	wire = wire[n:]
	o.typ, o.num, o.raw = typ, 0, nil
	switch typ {
	case protowire.VarintType:
		o.num, n = protowire.ConsumeVarint(wire)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(wire)
		o.num = uint64(v)
	case protowire.Fixed64Type:
		o.num, n = protowire.ConsumeFixed64(wire)
	case protowire.BytesType:
		o.raw, n = protowire.ConsumeBytes(wire)
	default:
		return num, nil, false
	}
	if n < 0 {
		return num, nil, false
	}
	return num, wire[n:], true
}

// wireKey is a map key as the wire holds it.
func wireKey(fd protoreflect.FieldDescriptor, o *occurrence) (protoreflect.MapKey, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(o.raw)).MapKey(), o.typ == protowire.BytesType
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(o.num != 0).MapKey(), true
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(o.num)).MapKey(), true //nolint:gosec // int32 on the wire
	case protoreflect.Sint32Kind:
		return protoreflect.ValueOfInt32(int32(protowire.DecodeZigZag(o.num & math.MaxUint32))).MapKey(), true //nolint:gosec // as above
	case protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(o.num)).MapKey(), true //nolint:gosec // as above
	case protoreflect.Int64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(o.num)).MapKey(), true //nolint:gosec // int64 on the wire
	case protoreflect.Sint64Kind:
		return protoreflect.ValueOfInt64(protowire.DecodeZigZag(o.num)).MapKey(), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(o.num)).MapKey(), true //nolint:gosec // uint32 on the wire
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(o.num).MapKey(), true
	default: // not a key kind
		return protoreflect.MapKey{}, false
	}
}

// appendDefault writes the value of a scalar field that is not on the wire.
func appendDefault(b []byte, fd protoreflect.FieldDescriptor, enum map[protoreflect.EnumNumber]string) ([]byte, bool) {
	if fd.Kind() == protoreflect.MessageKind {
		return append(b, "null"...), true
	}
	return appendSingular(b, fd.Default(), fd, enum)
}

// appendWireValue writes one value of field fd from its wire occurrence.
func appendWireValue(b []byte, fd protoreflect.FieldDescriptor, enum map[protoreflect.EnumNumber]string, o *occurrence) ([]byte, bool) {
	want := protowire.VarintType
	switch fd.Kind() {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		want = protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		want = protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		want = protowire.BytesType
	case protoreflect.GroupKind:
		return b, false
	default: // varints
	}
	if o.typ != want {
		return b, false
	}
	v := o.num
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v != 0), true
	case protoreflect.StringKind:
		return appendString(b, unsafe.String(unsafe.SliceData(o.raw), len(o.raw))) //nolint:gosec // a view of the wire bytes, read only within the call
	case protoreflect.BytesKind:
		b = append(b, '"')
		return append(base64.StdEncoding.AppendEncode(b, o.raw), '"'), true
	case protoreflect.MessageKind:
		return appendWireMessage(b, planOf(fd.Message()), o.raw)
	case protoreflect.Int32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, int64(int32(v)), 10), true //nolint:gosec // int32 on the wire
	case protoreflect.Sint32Kind:
		return strconv.AppendInt(b, int64(int32(protowire.DecodeZigZag(v&math.MaxUint32))), 10), true //nolint:gosec // as above
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, uint64(uint32(v)), 10), true //nolint:gosec // uint32 on the wire
	case protoreflect.Int64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendInt(b, int64(v), 10), '"'), true //nolint:gosec // int64 on the wire
	case protoreflect.Sint64Kind:
		b = append(b, '"')
		return append(strconv.AppendInt(b, protowire.DecodeZigZag(v), 10), '"'), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendUint(b, v, 10), '"'), true
	case protoreflect.FloatKind:
		return appendFloat(b, float64(math.Float32frombits(uint32(v))), 32), true //nolint:gosec // 32 bits on the wire
	case protoreflect.DoubleKind:
		return appendFloat(b, math.Float64frombits(v), 64), true
	case protoreflect.EnumKind:
		n := protoreflect.EnumNumber(int32(v)) //nolint:gosec // int32 on the wire
		if name, ok := enum[n]; ok {
			b = append(b, '"')
			return append(append(b, name...), '"'), true
		}
		return strconv.AppendInt(b, int64(n), 10), true
	case protoreflect.GroupKind:
	}
	return b, false
}
