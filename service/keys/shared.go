package keys

import (
	"strconv"
	"strings"
	"sync"
)

// maxShared bounds the distinct values a shared table holds: many keys hold one
// of a few (those of their owner, their roles); keys that all hold distinct ones
// gain nothing from sharing, and must not grow the table without bound.
const maxShared = 4096

// shared holds one copy of each distinct value many cached keys hold alike, by a
// name that encodes the whole value (name). A value is a function of its name
// alone, so no change invalidates it; the table is emptied when it reaches
// maxShared.
type shared[T any] struct {
	mu     sync.Mutex
	values map[string]*T
}

// get returns the value named n, made by build when no key holds it yet; found
// reports whether it was already held.
func (s *shared[T]) get(n string, build func() *T) (_ *T, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.values[n]; v != nil {
		return v, true
	}
	v := build()
	if s.values == nil || len(s.values) >= maxShared {
		s.values = map[string]*T{}
	}
	s.values[n] = v
	return v, false
}

// name encodes a sequence of fields, each length-prefixed or counted, so that no
// two sequences of the same shape share a name.
type name struct{ strings.Builder }

func (n *name) str(s string) *name {
	n.WriteString(strconv.Itoa(len(s)))
	n.WriteByte(':')
	n.WriteString(s)
	return n
}

func (n *name) strs(list []string) *name {
	n.num(uint64(len(list)))
	for _, s := range list {
		n.str(s)
	}
	return n
}

func (n *name) num(v uint64) *name {
	n.WriteString(strconv.FormatUint(v, 10))
	n.WriteByte(';')
	return n
}

// flag encodes whether an optional field is set, and returns it.
func (n *name) flag(set bool) bool {
	if set {
		n.WriteByte('+')
	} else {
		n.WriteByte('-')
	}
	return set
}
