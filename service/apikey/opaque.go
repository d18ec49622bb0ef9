package apikey

import (
	"hash/crc32"
	"strings"
)

// Opaque tokens (refresh and temporary tokens) share the secret's design with a
// different prefix and no environment:
//
//	kwr_<16 base32 id>_<43 base62 random><6 base62 checksum>   refresh token
//	kwt_<16 base32 id>_<43 base62 random><6 base62 checksum>   temporary token
//
// The id finds the stored record; only the SHA-256 of the whole token is stored.
const (
	RefreshPrefix   = "kwr_"
	TemporaryPrefix = "kwt_"

	opaquePrefixLen = 4
	opaqueRandom    = opaquePrefixLen + IDLen + 1
	opaqueChecksum  = opaqueRandom + randomLen
	// OpaqueLen is the length of every well-formed opaque token.
	OpaqueLen = opaqueChecksum + checksumLen
)

// NewOpaque returns a fresh opaque token with the prefix and a new id.
func NewOpaque(prefix string) (token, id string) {
	id = NewID()
	b := make([]byte, 0, OpaqueLen)
	b = append(b, prefix...)
	b = append(b, id...)
	b = append(b, '_')
	var random [randomLen]byte
	fill(random[:], base62)
	b = append(b, random[:]...)
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE(b))
	b = append(b, sum[:]...)
	return string(b), id
}

// ParseOpaque checks the form of an opaque token with the prefix and returns its id.
func ParseOpaque(prefix, token string) (string, error) {
	if len(token) != OpaqueLen {
		return "", ErrLength
	}
	if !strings.HasPrefix(token, prefix) || len(prefix) != opaquePrefixLen || token[opaqueRandom-1] != '_' {
		return "", ErrPrefix
	}
	id := token[opaquePrefixLen : opaquePrefixLen+IDLen]
	if !ValidID(id) {
		return "", ErrAlphabet
	}
	for i := opaqueRandom; i < OpaqueLen; i++ {
		if !isBase62(token[i]) {
			return "", ErrAlphabet
		}
	}
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE(unsafeBytes(token[:opaqueChecksum])))
	if string(sum[:]) != token[opaqueChecksum:] {
		return "", ErrChecksum
	}
	return id, nil
}
