package embedded

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/keyward/keyward/repository"
)

// An audit segment holds the events of one kind (authenticated or not) written
// together, encoded in one blob: one row and a few index entries per batch instead
// of a row and six index entries per event, which made the audit writer the
// largest cost of a call.
//
// The blob is a version byte; then, for each filtered field (segmentFields), a
// dictionary of the distinct values its events hold, and one of their other
// repeated strings (dictOther); then the events, newest first, each prefixed by its
// length:
//
//	id, index of each filtered field's value, time (ms), size (eventSize), request
//	id, index of the HTTP method, HTTP route, token id, user agent and denial
//	reason, headers (count, then the indexes of name and value), HTTP status,
//	latency (ns), flags (throttled, has end), count, end (ms)
//
// Strings are a length and their bytes, signed numbers zigzag varints. A listing
// skips a segment lacking a filtered value from its dictionaries, and an event by
// its length after comparing dictionary indexes. The strings most events repeat
// (methods, user agents, the audited headers) are stored once per segment, which
// keeps the bytes the writer commits, its largest cost, small.
const segmentVersion = 1

// The filtered fields, in the order of their dictionaries; each is also the tag of
// its values in audit_terms.
const (
	fieldMethod = iota
	fieldCaller
	fieldSubject
	fieldClientIP
	fieldCode
	segmentFields

	dictOther = segmentFields     // the dictionary of the other repeated strings
	dicts     = segmentFields + 1 // dictionaries in a segment
)

// maxSegmentEvents bounds the events of one segment, so that reading one stays
// cheap whatever the writer's batch size.
const maxSegmentEvents = 2048

// Flags of an encoded event.
const (
	flagThrottled = 1 << iota
	flagEnd
)

// filteredValues are an event's values of the filtered fields, by field.
func filteredValues(e *repository.AuditEvent) [segmentFields]string {
	return [segmentFields]string{e.Method, e.CallerKeyID, e.Subject, e.ClientIP, e.Code}
}

// segmentBuilder encodes the events of one segment.
type segmentBuilder struct {
	dicts  [dicts][]string
	index  [dicts]map[string]uint64
	body   []byte
	n      int
	size   int64 // the events' sizes (eventSize), summed
	minMS  int64
	maxMS  int64
	minID  string
	maxID  string
	record []byte
	out    []byte // the last blob
	// filterBuf holds the last filters; exactOnly indexes every field in
	// audit_terms (for a schema without filters).
	filterBuf []byte
	exactOnly bool
}

// maxKeptBuffer is the capacity of the buffers a builder keeps for its next
// segment; a larger one (a segment of unusually large events) is let go.
const maxKeptBuffer = 1 << 20

// reset empties the builder for the next segment, keeping its buffers: the
// writer encodes every batch with the same two builders.
func (b *segmentBuilder) reset() {
	for d := range b.dicts {
		clear(b.dicts[d]) // no event's strings outlive its segment
		b.dicts[d] = b.dicts[d][:0]
		clear(b.index[d])
	}
	keep := func(buf []byte) []byte {
		if cap(buf) > maxKeptBuffer {
			return nil
		}
		return buf[:0]
	}
	b.body, b.record, b.out, b.filterBuf = keep(b.body), keep(b.record), keep(b.out), keep(b.filterBuf)
	b.n, b.size, b.minMS, b.maxMS, b.minID, b.maxID = 0, 0, 0, 0, "", ""
}

func newSegmentBuilder() *segmentBuilder {
	b := &segmentBuilder{}
	for f := range b.index {
		b.index[f] = map[string]uint64{}
	}
	return b
}

// add appends e; events must be added newest (greatest id) first.
func (b *segmentBuilder) add(e *repository.AuditEvent) {
	r := appendString(b.record[:0], e.ID)
	for f, v := range filteredValues(e) {
		r = b.appendIndex(r, f, v)
	}
	ms := e.Time.UnixMilli()
	r = binary.AppendVarint(r, ms)
	size := eventSize(e)
	r = binary.AppendVarint(r, size)
	r = appendString(r, e.RequestID)
	for _, s := range [...]string{e.HTTPMethod, e.HTTPRoute, e.TokenID, e.UserAgent, e.DenialReason} {
		r = b.appendIndex(r, dictOther, s)
	}
	r = binary.AppendUvarint(r, uint64(len(e.Headers)))
	for k, v := range e.Headers {
		r = b.appendIndex(b.appendIndex(r, dictOther, k), dictOther, v)
	}
	r = binary.AppendVarint(r, int64(e.HTTPStatus))
	r = binary.AppendVarint(r, int64(e.Latency))
	var flags byte
	if e.Throttled {
		flags |= flagThrottled
	}
	if !e.EndTime.IsZero() {
		flags |= flagEnd
	}
	r = append(r, flags)
	r = binary.AppendVarint(r, e.Count)
	if flags&flagEnd != 0 {
		r = binary.AppendVarint(r, e.EndTime.UnixMilli())
	}
	b.body = binary.AppendUvarint(b.body, uint64(len(r)))
	b.body = append(b.body, r...)
	b.record = r
	b.size += size
	if b.n == 0 {
		b.maxID, b.minMS, b.maxMS = e.ID, ms, ms
	}
	b.minID = e.ID
	b.minMS, b.maxMS = min(b.minMS, ms), max(b.maxMS, ms)
	b.n++
}

// appendIndex appends the index of v in dictionary d, adding it there if new.
func (b *segmentBuilder) appendIndex(r []byte, d int, v string) []byte {
	i, ok := b.index[d][v]
	if !ok {
		i = uint64(len(b.dicts[d]))
		b.index[d][v] = i
		b.dicts[d] = append(b.dicts[d], v)
	}
	return binary.AppendUvarint(r, i)
}

// eventSize is the bytes an event counts for against its kind's bound: those of
// its strings, and 16 for its numbers, whatever the encoding.
func eventSize(e *repository.AuditEvent) int64 {
	n := 16 + len(e.ID) + len(e.RequestID) + len(e.HTTPMethod) + len(e.HTTPRoute) + len(e.TokenID) + len(e.UserAgent) + len(e.DenialReason)
	for _, v := range filteredValues(e) {
		n += len(v)
	}
	for k, v := range e.Headers {
		n += len(k) + len(v)
	}
	return int64(n)
}

// blob returns the encoded segment, in a buffer the builder reuses after reset.
func (b *segmentBuilder) blob() []byte {
	out := slices.Grow(b.out[:0], len(b.body)+64*dicts)
	out = append(out, segmentVersion)
	for _, d := range b.dicts {
		out = binary.AppendUvarint(out, uint64(len(d)))
		for _, v := range d {
			out = appendString(out, v)
		}
	}
	out = binary.AppendUvarint(out, uint64(b.n)) //nolint:gosec // a count
	b.out = append(out, b.body...)
	return b.out
}

// terms returns the audit_terms entries of the segment: each distinct value of
// each filtered field it indexes (exact), tagged by its field.
func (b *segmentBuilder) terms() []string {
	var out []string
	for f, d := range b.dicts[:segmentFields] {
		if !b.exact(f) {
			continue
		}
		for _, v := range d {
			out = append(out, term(f, v))
		}
	}
	return out
}

// exact reports whether the segment indexes field f's values in audit_terms;
// the others are in its filters (see auditfilter.go).
func (b *segmentBuilder) exact(f int) bool {
	return b.exactOnly || len(b.dicts[f]) <= exactTerms
}

// filters returns the segment's filters of the fields it does not index
// exactly, and those fields (a bit each), nil when there is none.
func (b *segmentBuilder) filters() (_ []byte, fields int) {
	var out []byte
	for f, d := range b.dicts[:segmentFields] {
		if b.exact(f) {
			continue
		}
		if out == nil {
			out = append(b.filterBuf[:0], filtersVersion)
		}
		out = appendFilter(out, f, d)
		fields |= 1 << f
	}
	if out != nil {
		b.filterBuf = out
	}
	return out, fields
}

// termTags prefix the audit_terms entries of each field.
var termTags = [segmentFields]string{"a", "b", "c", "d", "e"}

// term is the audit_terms entry of value v of field f.
func term(f int, v string) string { return termTags[f] + v }

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errCorruptSegment = errors.New("corrupt audit segment")

// segmentReader reads an encoded segment, in place: its dictionaries and events
// are slices of the blob, which must outlive it (the blob may be a buffer the
// database reuses after the row); what it returns are copies.
type segmentReader struct {
	dicts [dicts][][]byte
	n     int    // events in the segment
	left  int    // events not yet read
	rest  []byte // the events not yet read
	err   error
}

// readSegment parses a segment's header (its dictionaries).
func readSegment(blob []byte) (*segmentReader, error) {
	d := decoder{b: blob}
	if v := d.byte(); d.err == nil && v != segmentVersion {
		return nil, errCorruptSegment
	}
	r := &segmentReader{}
	for f := range r.dicts {
		n := d.count()
		if d.err != nil {
			break
		}
		r.dicts[f] = make([][]byte, n)
		for i := range r.dicts[f] {
			r.dicts[f][i] = d.bytes()
		}
	}
	r.n = d.count()
	r.left, r.rest = r.n, d.b
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// lookup returns the dictionary index of value v of field f, false when no event of
// the segment holds it.
func (r *segmentReader) lookup(f int, v string) (uint64, bool) {
	i := slices.IndexFunc(r.dicts[f], func(b []byte) bool { return string(b) == v })
	if i < 0 {
		return 0, false
	}
	return uint64(i), true
}

// segmentEvent is one encoded event, as read.
type segmentEvent struct {
	id     []byte // valid until the next call of next
	fields [segmentFields]uint64
	ms     int64
	size   int64  // eventSize
	record []byte // the encoding, from the id on
}

// next reads the next event's id and filtered fields, false at the end or on
// malformed data (then r.err is set).
func (r *segmentReader) next(e *segmentEvent) bool {
	if r.left == 0 || r.err != nil {
		return false
	}
	d := decoder{b: r.rest}
	n := d.count()
	if d.err != nil || n > len(d.b) {
		r.err = errCorruptSegment
		return false
	}
	e.record = d.b[:n]
	r.rest = d.b[n:]
	r.left--
	d = decoder{b: e.record}
	e.id = d.bytes()
	for f := range e.fields {
		e.fields[f] = d.uvarint()
		if d.err == nil && e.fields[f] >= uint64(len(r.dicts[f])) {
			d.err = errCorruptSegment
		}
	}
	e.ms = d.varint()
	e.size = d.varint()
	if d.err == nil && e.size < 0 {
		d.fail()
	}
	if d.err != nil {
		r.err = d.err
		return false
	}
	return true
}

// event decodes e in full.
func (r *segmentReader) event(e *segmentEvent, authenticated bool) (*repository.AuditEvent, error) {
	d := decoder{b: e.record}
	out := &repository.AuditEvent{ID: string(d.bytes()), Authenticated: authenticated}
	for range e.fields {
		d.uvarint()
	}
	for f, s := range [segmentFields]*string{fieldMethod: &out.Method, fieldCaller: &out.CallerKeyID, fieldSubject: &out.Subject, fieldClientIP: &out.ClientIP, fieldCode: &out.Code} {
		*s = string(r.dicts[f][e.fields[f]])
	}
	out.Time = time.UnixMilli(d.varint()).UTC()
	d.varint() // the size
	out.RequestID = string(d.bytes())
	other := func() string {
		i := d.uvarint()
		if i >= uint64(len(r.dicts[dictOther])) {
			d.fail()
			return ""
		}
		return string(r.dicts[dictOther][i])
	}
	for _, s := range [...]*string{&out.HTTPMethod, &out.HTTPRoute, &out.TokenID, &out.UserAgent, &out.DenialReason} {
		*s = other()
	}
	if n := d.count(); n > 0 && d.err == nil {
		out.Headers = make(map[string]string, n)
		for range n {
			k := other()
			out.Headers[k] = other()
		}
	}
	status := d.varint()
	if status < math.MinInt32 || status > math.MaxInt32 {
		d.fail()
	}
	out.HTTPStatus = int32(status) //nolint:gosec // in range, checked above
	out.Latency = time.Duration(d.varint())
	flags := d.byte()
	out.Throttled = flags&flagThrottled != 0
	out.Count = d.varint()
	if flags&flagEnd != 0 {
		out.EndTime = time.UnixMilli(d.varint()).UTC()
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, errCorruptSegment
	}
	return out, nil
}

// decoder reads varints and strings, recording the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorruptSegment
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, which cannot exceed the bytes left (each element takes
// at least one).
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v) //nolint:gosec // at most len(d.b)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// compareID orders event ids as the store does (bytewise), without copying a.
func compareID(a []byte, b string) int {
	switch {
	case string(a) < b:
		return -1
	case string(a) > b:
		return 1
	}
	return 0
}
