package apikey

import "unsafe"

// unsafeBytes views a string's bytes without copying. The callers only read them.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s)) //nolint:gosec // a read-only view: the callers never write the bytes
}
