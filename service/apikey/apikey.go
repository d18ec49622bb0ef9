// Package apikey defines the format of Keyward API key secrets: how they are made,
// recognised without the database, and hashed for storage.
//
// A secret looks like
//
//		kw_live_abcdefghijklmnop_<43 base62 characters of randomness><6 base62 checksum>
//
//	  - `kw_` marks a Keyward secret, so secret scanners can find leaked ones;
//	  - `live` or `test` is the key's environment;
//	  - the 16 lowercase base32 characters are the key id, by which the key is looked up;
//	  - 43 base62 characters carry 256 bits from crypto/rand;
//	  - the last 6 base62 characters are the CRC-32 (IEEE) of everything before them, so a
//	    typo or a truncated copy is recognised without a database lookup.
//
// Keyward stores only the SHA-256 of the whole secret. With 256 random bits a secret
// cannot be guessed or brute-forced from its hash, so no slow password hash or pepper
// is needed, and verification stays cheap.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash/crc32"
	"strings"
)

// Layout of a secret.
const (
	prefix       = "kw_"
	envLen       = 4  // "live" or "test"
	IDLen        = 16 // key id characters
	randomLen    = 43 // base62 characters: 43 × log2(62) ≈ 256.03 bits
	checksumLen  = 6  // base62 CRC-32
	idStart      = len(prefix) + envLen + 1
	randomStart  = idStart + IDLen + 1
	checksumFrom = randomStart + randomLen
	// Len is the length of every well-formed secret.
	Len = checksumFrom + checksumLen
)

const (
	base62   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	base32ID = "abcdefghijklmnopqrstuvwxyz234567"
)

// Environments as they appear in the prefix.
const (
	EnvLive = "live"
	EnvTest = "test"
)

// Errors from Parse. They never contain the secret.
var (
	ErrLength   = errors.New("api key has the wrong length")
	ErrPrefix   = errors.New("api key does not start with kw_live_ or kw_test_")
	ErrAlphabet = errors.New("api key contains characters outside its alphabet")
	ErrChecksum = errors.New("api key checksum does not match")
)

// Parsed is a well-formed secret's parts. Its strings share the secret's memory.
type Parsed struct {
	Env   string
	KeyID string
}

// Parse checks the form of a secret (length, prefix, alphabet, checksum) without any
// lookup, and returns its environment and key id. It does not allocate.
func Parse(secret string) (Parsed, error) {
	if len(secret) != Len {
		return Parsed{}, ErrLength
	}
	if !strings.HasPrefix(secret, prefix) || secret[idStart-1] != '_' || secret[randomStart-1] != '_' {
		return Parsed{}, ErrPrefix
	}
	env := secret[len(prefix) : len(prefix)+envLen]
	if env != EnvLive && env != EnvTest {
		return Parsed{}, ErrPrefix
	}
	id := secret[idStart : idStart+IDLen]
	if !ValidID(id) {
		return Parsed{}, ErrAlphabet
	}
	for i := randomStart; i < Len; i++ {
		if !isBase62(secret[i]) {
			return Parsed{}, ErrAlphabet
		}
	}
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE(unsafeBytes(secret[:checksumFrom])))
	if string(sum[:]) != secret[checksumFrom:] {
		return Parsed{}, ErrChecksum
	}
	return Parsed{Env: env, KeyID: id}, nil
}

// ValidID reports whether id has the form of a key id.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// NewID returns a random key id: 16 lowercase base32 characters (80 bits).
func NewID() string {
	var b [IDLen]byte
	fill(b[:], base32ID)
	return string(b[:])
}

// New returns a fresh secret for the key id in the environment ("live" or "test").
func New(env, keyID string) (string, error) {
	var random [randomLen]byte
	fill(random[:], base62)
	return Assemble(env, keyID, string(random[:]))
}

// Assemble lays out a secret from its parts and appends the checksum. random must be
// 43 base62 characters; New is the way to make a real secret.
func Assemble(env, keyID, random string) (string, error) {
	if env != EnvLive && env != EnvTest {
		return "", ErrPrefix
	}
	if !ValidID(keyID) || len(random) != randomLen {
		return "", ErrAlphabet
	}
	b := make([]byte, 0, Len)
	b = append(b, prefix...)
	b = append(b, env...)
	b = append(b, '_')
	b = append(b, keyID...)
	b = append(b, '_')
	b = append(b, random...)
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE(b))
	b = append(b, sum[:]...)
	return string(b), nil
}

// Hash is the stored form of a secret.
type Hash = [sha256.Size]byte

// HashOf returns the SHA-256 of the secret without allocating.
func HashOf(secret string) Hash {
	return sha256.Sum256(unsafeBytes(secret))
}

// Equal compares a hash with a stored hash in constant time.
func Equal(h Hash, stored []byte) bool {
	return subtle.ConstantTimeCompare(h[:], stored) == 1
}

// FingerprintLen is the length of a secret's fingerprint: the start of its hash,
// enough to tell a key's secrets apart without keeping another copy of the hash.
const FingerprintLen = 8

// Fingerprint returns the fingerprint of a hash.
func Fingerprint(h Hash) [FingerprintLen]byte { return [FingerprintLen]byte(h[:FingerprintLen]) }

// MatchesFingerprint reports in constant time whether the stored hash begins with
// the fingerprint.
func MatchesFingerprint(fingerprint, stored []byte) bool {
	return len(fingerprint) == FingerprintLen && len(stored) >= FingerprintLen &&
		subtle.ConstantTimeCompare(fingerprint, stored[:FingerprintLen]) == 1
}

// fill writes uniformly random characters of alphabet into b, from crypto/rand, by
// rejection sampling (no modulo bias).
func fill(b []byte, alphabet string) {
	limit := byte(256 - 256%len(alphabet)) //nolint:gosec // 248 for 62 characters; 256 for 32 wraps to 0, which the loop reads as "take every byte"
	var buf [64]byte
	for i := 0; i < len(b); {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails
		for _, r := range buf {
			if r >= limit && limit != 0 {
				continue
			}
			b[i] = alphabet[int(r)%len(alphabet)]
			i++
			if i == len(b) {
				return
			}
		}
	}
}

func encodeChecksum(dst *[checksumLen]byte, v uint32) {
	for i := checksumLen - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

func isBase62(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}
