package apikey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewParsesBack(t *testing.T) {
	t.Parallel()
	for _, env := range []string{EnvLive, EnvTest} {
		id := NewID()
		s, err := New(env, id)
		require.NoError(t, err)
		assert.Len(t, s, Len)
		assert.True(t, strings.HasPrefix(s, "kw_"+env+"_"+id+"_"))
		p, err := Parse(s)
		require.NoError(t, err)
		assert.Equal(t, Parsed{Env: env, KeyID: id}, p)
	}
}

func TestSecretsAreDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	id := NewID()
	for range 1000 {
		s, err := New(EnvLive, id)
		require.NoError(t, err)
		require.False(t, seen[s[randomStart:checksumFrom]], "random part repeated")
		seen[s[randomStart:checksumFrom]] = true
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	good, err := New(EnvLive, "abcdefghijklmnop")
	require.NoError(t, err)
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name, secret string
		want         error
	}{
		{"empty", "", ErrLength},
		{"truncated", good[:Len-1], ErrLength},
		{"extra character", good + "x", ErrLength},
		{"wrong prefix", "xx" + good[2:], ErrPrefix},
		{"unknown environment", strings.Replace(good, "kw_live_", "kw_prod_", 1), ErrPrefix},
		{"uppercase key id", good[:idStart] + "ABCDEFGHIJKLMNOP" + good[idStart+IDLen:], ErrAlphabet},
		{"unicode look-alike", good[:randomStart] + "а" + good[randomStart+2:], ErrAlphabet}, // Cyrillic a, 2 bytes
		{"typo in random part", flip(randomStart + 5), ErrChecksum},
		{"typo in checksum", flip(Len - 1), ErrChecksum},
		{"test secret relabelled live", strings.Replace(mustNew(t, EnvTest), "kw_test_", "kw_live_", 1), ErrChecksum},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.secret)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func mustNew(t *testing.T, env string) string {
	s, err := New(env, NewID())
	require.NoError(t, err)
	return s
}

func TestHashComparesWholeSecret(t *testing.T) {
	t.Parallel()
	a, b := mustNew(t, EnvLive), mustNew(t, EnvLive)
	ha := HashOf(a)
	assert.True(t, Equal(HashOf(a), ha[:]))
	assert.False(t, Equal(HashOf(b), ha[:]))
	assert.False(t, Equal(HashOf(a), ha[:16]), "a truncated stored hash never matches")
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	s := mustNew(t, EnvLive)
	allocs := testing.AllocsPerRun(100, func() {
		p, err := Parse(s)
		if err != nil || p.KeyID == "" {
			t.Fatal("parse failed")
		}
		h := HashOf(s)
		if !Equal(h, h[:]) {
			t.Fatal("hash mismatch")
		}
	})
	assert.Zero(t, allocs)
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	_, err := New("prod", NewID())
	assert.ErrorIs(t, err, ErrPrefix)
	_, err = New(EnvLive, "short")
	assert.ErrorIs(t, err, ErrAlphabet)
}

func FuzzParse(f *testing.F) {
	f.Add("kw_live_abcdefghijklmnop_" + strings.Repeat("a", randomLen+checksumLen))
	s, _ := New(EnvTest, "abcdefghijklmnop")
	f.Add(s)
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse(in)
		if err != nil {
			return
		}
		// Anything accepted has the documented shape.
		if len(in) != Len || !ValidID(p.KeyID) || (p.Env != EnvLive && p.Env != EnvTest) {
			t.Fatalf("accepted malformed secret %q", in)
		}
	})
}

func BenchmarkParseAndHash(b *testing.B) {
	s, _ := New(EnvLive, NewID())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
		_ = HashOf(s)
	}
}

func TestOpaqueTokens(t *testing.T) {
	t.Parallel()
	tok, id := NewOpaque(RefreshPrefix)
	assert.Len(t, tok, OpaqueLen)
	got, err := ParseOpaque(RefreshPrefix, tok)
	require.NoError(t, err)
	assert.Equal(t, id, got)
	_, err = ParseOpaque(TemporaryPrefix, tok)
	assert.ErrorIs(t, err, ErrPrefix, "a refresh token is not a temporary token")
	_, err = ParseOpaque(RefreshPrefix, tok[:len(tok)-1]+flipLast(tok))
	assert.ErrorIs(t, err, ErrChecksum)
	_, err = ParseOpaque(RefreshPrefix, tok+"x")
	assert.ErrorIs(t, err, ErrLength)
	secret := mustNew(t, EnvLive)
	_, err = ParseOpaque(RefreshPrefix, secret)
	assert.Error(t, err, "an API key is not a refresh token")
}

func flipLast(s string) string {
	if s[len(s)-1] == 'A' {
		return "B"
	}
	return "A"
}

func FuzzParseOpaque(f *testing.F) {
	tok, _ := NewOpaque(TemporaryPrefix)
	f.Add(tok)
	f.Fuzz(func(t *testing.T, in string) {
		id, err := ParseOpaque(TemporaryPrefix, in)
		if err == nil && (len(in) != OpaqueLen || !ValidID(id)) {
			t.Fatalf("accepted malformed token %q", in)
		}
	})
}
