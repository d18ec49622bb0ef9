package embedded

import (
	"database/sql/driver"
	"encoding/binary"

	"modernc.org/sqlite"
)

// A filtered field with many distinct values in one segment (each event naming
// another key: a large fleet's verifications) is not indexed in audit_terms:
// each of its values would add an entry somewhere in a large index, a page
// written per event. The segment's row holds a Bloom filter of those values
// instead (audit_filters), which a listing tests in the query
// (audit_may_hold) before reading the segment, whose dictionary then decides.
// A value of such a field is found by reading the filters of the segments that
// have them, not by one index lookup: writes are cheap, a listing by a rare
// value of a busy log costs more.
//
// The filters are a version byte, then for each field filtered: its number,
// the hash count, the filter's length in bytes (uvarint) and its bits.
const (
	filtersVersion = 1
	// exactTerms is the most distinct values of a field a segment indexes in
	// audit_terms; a field with more is filtered.
	exactTerms = 32
	// filterBitsPerValue and filterHashes make a filter's false positives about
	// 1%: a segment read for nothing in a hundred.
	filterBitsPerValue = 10
	filterHashes       = 7
)

// appendFilter appends the filter of field f's values.
func appendFilter(out []byte, f int, values []string) []byte {
	size := (len(values)*filterBitsPerValue + 63) / 64 * 8 // bytes, a whole number of words
	out = append(out, byte(f), filterHashes)               //nolint:gosec // a field number, below segmentFields
	out = binary.AppendUvarint(out, uint64(size))
	start := len(out)
	out = append(out, make([]byte, size)...)
	bits := out[start:]
	for _, v := range values {
		h1, h2 := filterHash(v)
		for i := range uint32(filterHashes) {
			bit := (h1 + i*h2) % uint32(size*8) //nolint:gosec // a filter is far smaller than 512 MiB
			bits[bit/8] |= 1 << (bit % 8)
		}
	}
	return out
}

// filterHash returns the two hashes of v the filter's bit positions are made
// of (double hashing): the halves of v's 64-bit FNV-1a hash, mixed by
// MurmurHash3's finalizer; the second is odd, so the positions differ. Filters
// are stored: the hash must never change.
func filterHash(v string) (uint32, uint32) {
	s := uint64(14695981039346656037)
	for i := range len(v) {
		s ^= uint64(v[i])
		s *= 1099511628211
	}
	s ^= s >> 33
	s *= 0xff51afd7ed558ccd
	s ^= s >> 33
	s *= 0xc4ceb9fe1a85ec53
	s ^= s >> 33
	return uint32(s), uint32(s>>32) | 1 //nolint:gosec // the two halves of the hash
}

// mayHold reports whether filters may hold value v of field f: false when they
// do not filter the field (the segment indexes it in audit_terms, which
// decides) or its filter does not hold v. Damaged filters may hold anything:
// the segment's dictionary decides.
func mayHold(filters []byte, f int, v string) bool {
	d := decoder{b: filters}
	if d.byte() != filtersVersion || d.err != nil {
		return true
	}
	for len(d.b) > 0 {
		field, hashes := d.byte(), d.byte()
		bits := d.bytes()
		if d.err != nil || len(bits) == 0 {
			return true
		}
		if int(field) != f {
			continue
		}
		h1, h2 := filterHash(v)
		for i := range uint32(hashes) {
			bit := (h1 + i*h2) % uint32(len(bits)*8) //nolint:gosec // a filter is far smaller than 512 MiB
			if bits[bit/8]&(1<<(bit%8)) == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// filteredFields returns the fields filters filter, as a bit mask by field;
// ok is false for damaged filters. No filters filter nothing.
func filteredFields(filters []byte) (mask uint8, ok bool) {
	if filters == nil {
		return 0, true
	}
	d := decoder{b: filters}
	if d.byte() != filtersVersion || d.err != nil {
		return 0, false
	}
	for len(d.b) > 0 {
		field, _ := d.byte(), d.byte()
		if bits := d.bytes(); d.err != nil || len(bits) == 0 || field >= segmentFields {
			return 0, false
		}
		mask |= 1 << field
	}
	return mask, true
}

// The SQL function audit_may_hold(filters, field, value): 1 when the segment
// may hold value of field by its filters (see mayHold).
func init() {
	sqlite.MustRegisterFunction("audit_may_hold", &sqlite.FunctionImpl{
		NArgs: 3, Deterministic: true,
		Scalar: func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			filters, _ := args[0].([]byte)
			field, _ := args[1].(int64)
			v, _ := args[2].(string)
			if filters == nil || mayHold(filters, int(field), v) {
				return int64(1), nil
			}
			return int64(0), nil
		},
	})
}
