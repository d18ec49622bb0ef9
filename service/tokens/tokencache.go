package tokens

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/permission"
)

// verifiedToken is what a signature verification proved about one access token. It
// is shared by every later validation of the same token and never modified: claims
// and perms reach callers, read-only, through TokenVerdict.
type verifiedToken struct {
	// claims are held in place, not behind a pointer of their own: the verifier
	// decodes into them, and a verification allocates one object for both.
	claims accesstoken.Claims
	perms  permission.Set
	kid    string
	// exp is always set (the parser requires it); nbf and iat are zero when absent.
	exp, nbf, iat time.Time
}

// freeze completes e, whose claims are those of a token that just verified with the
// key kid. Every slice is clipped, so that an append by a caller copies instead of
// writing into memory other verdicts share.
func (e *verifiedToken) freeze(kid string) {
	claims := &e.claims
	claims.Audience = slices.Clip(claims.Audience)
	claims.Roles = slices.Clip(claims.Roles)
	claims.Permissions = slices.Clip(claims.Permissions)
	claims.CIDRs = slices.Clip(claims.CIDRs)
	perms := make(permission.Set, 0, len(claims.Permissions))
	for _, p := range claims.Permissions {
		if parsed, err := permission.Parse(p); err == nil {
			perms = append(perms, parsed)
		}
	}
	e.perms, e.kid, e.exp = slices.Clip(perms), kid, claims.ExpiresAt.Time
	if claims.NotBefore != nil {
		e.nbf = claims.NotBefore.Time
	}
	if claims.IssuedAt != nil {
		e.iat = claims.IssuedAt.Time
	}
}

// timeReason checks the token's times at now, as the parser does with the same
// leeway: TokenExpired takes precedence over TokenNotYetValid, as in
// accesstoken.Verifier.
func (e *verifiedToken) timeReason(now time.Time, leeway time.Duration) TokenReason {
	switch {
	case !now.Before(e.exp.Add(leeway)):
		return TokenExpired
	case !e.nbf.IsZero() && now.Before(e.nbf.Add(-leeway)),
		!e.iat.IsZero() && now.Before(e.iat.Add(-leeway)):
		return TokenNotYetValid
	}
	return TokenOK
}

// evictSample is how many entries a put into a full cache looks at.
const evictSample = 8

// tokenCache remembers the access tokens whose signature verified, so that a token
// presented again is neither parsed nor verified again (the signature check is most
// of a validation's cost). The key is the whole token string: a hit means the very
// bytes that verified. It keeps only what the signature proves; what can change
// (the clock, the signing key's retirement, revocations, the key's state) is checked
// by Validate on every call, hit or not.
//
// It holds at most max entries. A put into a full cache looks at up to evictSample
// entries, in map order (which Go randomises), and drops those that have expired; if
// none has, it drops the first one it looked at. A put is therefore O(1), and a hit
// takes only the read lock.
type tokenCache struct {
	max    int
	leeway time.Duration

	mu      sync.RWMutex
	entries map[string]*verifiedToken
}

func newTokenCache(maxEntries int, leeway time.Duration) *tokenCache {
	return &tokenCache{max: maxEntries, leeway: leeway, entries: make(map[string]*verifiedToken, min(maxEntries, 1024))}
}

// get returns the entry of token, or nil.
func (c *tokenCache) get(token string) *verifiedToken {
	c.mu.RLock()
	e := c.entries[token]
	c.mu.RUnlock()
	return e
}

// put remembers that token verified, as e.
func (c *tokenCache) put(token string, e *verifiedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; ok {
		return // a concurrent validation of the same token got there first
	}
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	// A copy, so that the entry never keeps a larger buffer (a request, a header)
	// the token was cut from alive.
	c.entries[strings.Clone(token)] = e
}

// evict makes room for one entry. Caller holds mu.
func (c *tokenCache) evict(now time.Time) {
	var first string
	seen, dropped := 0, false
	for token, e := range c.entries {
		if seen == 0 {
			first = token
		}
		if !now.Before(e.exp.Add(c.leeway)) {
			delete(c.entries, token)
			dropped = true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if !dropped {
		delete(c.entries, first)
	}
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
