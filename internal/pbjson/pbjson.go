// Package pbjson encodes protobuf messages as the REST API answers them: the
// JSON that protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
// produces, member for member and in the same order, at a fraction of its cost.
//
// protojson sorts every message's fields on every call and walks them through
// wrappers; here each message type's fields are listed once, in declaration
// order (protojson's order), with their names already quoted. A message whose
// every field can be read back from the binary form (wire.go: proto3 scalars,
// enums, strings, bytes, maps, messages of such types, Timestamp, Duration) is
// encoded by protobuf's fast binary encoder and written from those bytes; any
// other through reflection. What this package does not encode itself it hands
// to protojson, so the output is protojson's in every case: well-known types
// other than Timestamp and Duration, messages with extension ranges or required
// fields, enum values with extension options, and any message whose encoding
// fails (invalid UTF-8, a timestamp out of range), for which protojson's own
// error is returned.
package pbjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Options are the protojson options whose output Marshal reproduces.
var Options = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// Marshal appends m's JSON encoding to b.
func Marshal(b []byte, m proto.Message) ([]byte, error) {
	if m == nil {
		return append(b, "{}"...), nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return delegate(b, m)
	}
	md := r.Descriptor()
	if wireable(md) {
		if out, ok := marshalWire(b, m, planOf(md)); ok {
			return out, nil
		}
		return delegate(b[:len(b):len(b)], m)
	}
	out, ok := appendMessage(b, r)
	if !ok {
		return delegate(b[:len(b):len(b)], m) // out may share b's array: leave it alone
	}
	return out, nil
}

// delegate appends protojson's encoding of m, without the whitespace protojson
// adds at random.
func delegate(b []byte, m proto.Message) ([]byte, error) {
	j, err := Options.Marshal(m)
	if err != nil {
		return b, err
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, j); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}

// plan is how one message type is encoded.
type plan struct {
	// delegate: protojson encodes this type (see the package comment).
	delegate bool
	// wkt is set for the well-known types encoded here, whose seconds and
	// nanos fields are these.
	wkt            wellKnown
	seconds, nanos protoreflect.FieldDescriptor
	fields         []field
	// dense and sparse find a field by number (wire.go): dense[n] is its
	// index plus one, for numbers below 64.
	dense  []int
	sparse map[protowire.Number]int
}

type wellKnown uint8

const (
	notWellKnown wellKnown = iota
	timestampType
	durationType
)

type field struct {
	fd protoreflect.FieldDescriptor
	// name is the member's name, quoted, with its colon.
	name []byte
	// skipUnset: an unset field of a oneof (a proto3 optional field too) is left
	// out; an unset field with presence is null; any other is its default.
	skipUnset, nullUnset bool
	list, isMap          bool
	// enum lists an enum field's (or map value's) value names by number.
	enum map[protoreflect.EnumNumber]string
	// value is the field itself, or a map's value field.
	value protoreflect.FieldDescriptor
}

// plans holds each message type's plan, by its descriptor: two types of one
// name (dynamic messages) are planned apart.
var plans sync.Map // protoreflect.MessageDescriptor → *plan

func planOf(md protoreflect.MessageDescriptor) *plan {
	if p, ok := plans.Load(md); ok {
		return p.(*plan) //nolint:forcetypeassert // the map holds nothing else
	}
	p := newPlan(md)
	actual, _ := plans.LoadOrStore(md, p)
	return actual.(*plan) //nolint:forcetypeassert // the map holds nothing else
}

func newPlan(md protoreflect.MessageDescriptor) *plan {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return &plan{wkt: timestampType, seconds: md.Fields().ByNumber(1), nanos: md.Fields().ByNumber(2)}
	case "google.protobuf.Duration":
		return &plan{wkt: durationType, seconds: md.Fields().ByNumber(1), nanos: md.Fields().ByNumber(2)}
	}
	if md.ParentFile() != nil && md.ParentFile().Package() == "google.protobuf" {
		return &plan{delegate: true} // the other well-known types have JSON forms of their own
	}
	if md.ExtensionRanges().Len() > 0 || md.RequiredNumbers().Len() > 0 {
		return &plan{delegate: true}
	}
	fds := md.Fields()
	p := &plan{fields: make([]field, 0, fds.Len())}
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.Kind() == protoreflect.GroupKind {
			return &plan{delegate: true}
		}
		f := field{fd: fd, value: fd, name: append(strconv.AppendQuote(nil, fd.TextName()), ':')}
		if !isPlainName(fd.TextName()) {
			return &plan{delegate: true}
		}
		f.list, f.isMap = fd.IsList(), fd.IsMap()
		f.skipUnset = fd.ContainingOneof() != nil
		f.nullUnset = !f.skipUnset && fd.HasPresence()
		if fd.IsMap() {
			f.value = fd.MapValue()
		}
		if f.value.Kind() == protoreflect.EnumKind {
			enum, ok := enumNames(f.value.Enum())
			if !ok {
				return &plan{delegate: true}
			}
			f.enum = enum
		}
		p.fields = append(p.fields, f)
	}
	p.index()
	return p
}

// isPlainName: a field name strconv.AppendQuote and protojson write alike.
func isPlainName(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// enumNames lists an enum's value names; not ok when protojson would name a
// value otherwise (a value with an extension option, as the one that renames
// values in JSON is, or the NullValue enum, which it writes as null).
func enumNames(ed protoreflect.EnumDescriptor) (map[protoreflect.EnumNumber]string, bool) {
	if ed.FullName() == "google.protobuf.NullValue" {
		return nil, false
	}
	vals := ed.Values()
	names := make(map[protoreflect.EnumNumber]string, vals.Len())
	for i := range vals.Len() {
		v := vals.Get(i)
		if opts := v.Options(); opts != nil && opts.ProtoReflect().IsValid() && hasExtensions(opts.ProtoReflect()) {
			return nil, false
		}
		if _, dup := names[v.Number()]; !dup { // an alias: protojson names the first
			names[v.Number()] = string(v.Name())
		}
	}
	return names, true
}

func hasExtensions(m protoreflect.Message) bool {
	found := len(m.GetUnknown()) > 0
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		found = fd.IsExtension()
		return !found
	})
	return found
}

// appendMessage encodes m; not ok when protojson must (a delegated type, or a
// value protojson refuses).
func appendMessage(b []byte, m protoreflect.Message) ([]byte, bool) {
	p := planOf(m.Descriptor())
	switch {
	case p.delegate:
		out, err := delegate(b, m.Interface())
		return out, err == nil
	case p.wkt == timestampType:
		return appendTimestamp(b, m.Get(p.seconds).Int(), m.Get(p.nanos).Int())
	case p.wkt == durationType:
		return appendDuration(b, m.Get(p.seconds).Int(), m.Get(p.nanos).Int())
	}
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		set := m.Has(f.fd) // for a list or map: not empty
		if !set && f.skipUnset {
			continue
		}
		b, first = appendMember(b, first, f), false
		var ok bool
		switch {
		case !set && f.list:
			b, ok = append(b, "[]"...), true
		case !set && f.isMap:
			b, ok = append(b, "{}"...), true
		case !set && f.nullUnset:
			b, ok = append(b, "null"...), true
		case f.list:
			b, ok = appendList(b, m.Get(f.fd).List(), f)
		case f.isMap:
			b, ok = appendMap(b, m.Get(f.fd).Map(), f)
		default:
			b, ok = appendSingular(b, m.Get(f.fd), f.value, f.enum)
		}
		if !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendMember starts a message's member f: a comma unless it is the first,
// then its quoted name and colon.
func appendMember(b []byte, first bool, f *field) []byte {
	if !first {
		b = append(b, ',')
	}
	return append(b, f.name...)
}

func appendList(b []byte, l protoreflect.List, f *field) ([]byte, bool) {
	b = append(b, '[')
	for i := range l.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendSingular(b, l.Get(i), f.value, f.enum); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

// appendMap writes a map's entries in protojson's key order: false before
// true, numbers ascending, strings by bytes.
func appendMap(b []byte, mp protoreflect.Map, f *field) ([]byte, bool) {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool { keys = append(keys, k); return true })
	slices.SortFunc(keys, compareKeys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendString(b, k.String()); !ok {
			return b, false
		}
		b = append(b, ':')
		if b, ok = appendSingular(b, mp.Get(k), f.value, f.enum); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func compareKeys(x, y protoreflect.MapKey) int {
	switch xv := x.Interface().(type) {
	case bool:
		yv, _ := y.Interface().(bool)
		switch {
		case xv == yv:
			return 0
		case !xv:
			return -1
		}
		return 1
	case int32, int64:
		xi, yi := x.Int(), y.Int()
		switch {
		case xi < yi:
			return -1
		case xi > yi:
			return 1
		}
		return 0
	case uint32, uint64:
		xu, yu := x.Uint(), y.Uint()
		switch {
		case xu < yu:
			return -1
		case xu > yu:
			return 1
		}
		return 0
	}
	xs, ys := x.String(), y.String()
	switch {
	case xs < ys:
		return -1
	case xs > ys:
		return 1
	}
	return 0
}

func appendSingular(b []byte, v protoreflect.Value, fd protoreflect.FieldDescriptor, enum map[protoreflect.EnumNumber]string) ([]byte, bool) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), true
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendInt(b, v.Int(), 10), '"'), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendUint(b, v.Uint(), 10), '"'), true
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32), true
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64), true
	case protoreflect.BytesKind:
		b = append(b, '"')
		return append(base64.StdEncoding.AppendEncode(b, v.Bytes()), '"'), true
	case protoreflect.EnumKind:
		if name, ok := enum[v.Enum()]; ok {
			b = append(b, '"')
			return append(append(b, name...), '"'), true
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), true
	case protoreflect.MessageKind:
		return appendMessage(b, v.Message())
	case protoreflect.GroupKind: // planned as delegated
	}
	return b, false
}

// appendString quotes s as protojson does: only '"', '\\' and control
// characters are escaped, the short escapes where JSON has them; invalid UTF-8
// is refused.
func appendString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	return append(append(b, s[start:]...), '"'), true
}

// appendFloat is protojson's number form: NaN and the infinities as strings,
// exponents only for very small or large magnitudes, at most two exponent digits.
func appendFloat(b []byte, n float64, bitSize int) []byte {
	switch {
	case math.IsNaN(n):
		return append(b, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(b, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, n, format, -1, bitSize)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// The ranges protojson accepts.
const (
	minTimestampSeconds  = -62135596800 // 0001-01-01T00:00:00Z
	maxTimestampSeconds  = 253402300799 // 9999-12-31T23:59:59Z
	maxSecondsInDuration = 315576000000
	secondsInNanos       = 999999999
)

// appendTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(b []byte, secs, nanos int64) ([]byte, bool) {
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos > secondsInNanos {
		return b, false
	}
	b = append(b, '"')
	b = time.Unix(secs, nanos).UTC().AppendFormat(b, "2006-01-02T15:04:05")
	b = appendFraction(b, nanos)
	return append(b, 'Z', '"'), true
}

// appendDuration writes seconds with 0, 3, 6 or 9 fractional digits and an s.
func appendDuration(b []byte, secs, nanos int64) ([]byte, bool) {
	if secs < -maxSecondsInDuration || secs > maxSecondsInDuration ||
		nanos < -secondsInNanos || nanos > secondsInNanos ||
		(secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return b, false
	}
	b = append(b, '"')
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = appendFraction(b, nanos)
	return append(b, 's', '"'), true
}

// appendFraction writes nanos as protojson does: nothing for none, else a point
// and 3, 6 or 9 digits, the fewest that hold it.
func appendFraction(b []byte, nanos int64) []byte {
	if nanos == 0 {
		return b
	}
	digits := 9
	for range 2 {
		if nanos%1000 != 0 {
			break
		}
		nanos /= 1000
		digits -= 3
	}
	b = append(b, '.')
	var buf [9]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	return append(b, buf[:digits]...)
}
