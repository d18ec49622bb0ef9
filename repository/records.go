package repository

import (
	"fmt"
	"slices"
	"time"
)

// Environment of a key: it is part of the secret's prefix.
type Environment string

// Environments.
const (
	EnvironmentLive Environment = "live"
	EnvironmentTest Environment = "test"
)

// KeyState is the stored lifecycle state of a key. Expiry is not stored: a key whose
// ExpireTime has passed is expired when read, whatever its stored state.
type KeyState string

// Stored key states.
const (
	KeyActive  KeyState = "active"
	KeyRevoked KeyState = "revoked"
)

// RateLimit is a token-bucket limit.
type RateLimit struct {
	RequestsPerSecond uint32
	Burst             uint32
}

// Quota bounds usage per calendar period ("hour", "day", "month").
type Quota struct {
	Limit  uint64
	Period string
}

// Key is a stored API key. Its secrets are kept only as SHA-256 hashes.
// Times are stored with millisecond precision and read back in UTC; a zero time
// reads back as the zero time, and empty slices and maps read back as nil.
type Key struct {
	ID          string
	Name        string
	Owner       string
	Environment Environment
	State       KeyState

	Roles            []string
	Permissions      []string
	AllowedCIDRs     []string
	AllowedCountries []string
	DeniedCountries  []string
	Metadata         map[string]string
	RateLimit        *RateLimit
	Quota            *Quota

	// ExpireTime is when the key stops verifying; zero: never.
	ExpireTime time.Time

	// AllowedAudiences limits the audiences of access tokens issued to the key; empty: any.
	AllowedAudiences []string
	// MaxTokenTTL caps the lifetime of access tokens issued to the key; zero: the server's.
	MaxTokenTTL time.Duration

	// SecretHash is the SHA-256 of the current secret.
	SecretHash []byte
	// SecretRotateTime is when the current secret was issued.
	SecretRotateTime time.Time
	// PreviousSecretHash is the SHA-256 of the secret replaced by the last rotation,
	// valid until PreviousSecretExpireTime. Both are empty when there is none.
	PreviousSecretHash       []byte
	PreviousSecretExpireTime time.Time

	CreateTime   time.Time
	UpdateTime   time.Time
	LastUsedTime time.Time
	RevokeTime   time.Time
	RevokeReason string
	CreatedBy    string

	// Version counts the changes made through UpdateKey; it is the optimistic
	// concurrency token. A new key has version 1.
	Version int64
}

// Expired reports whether the key's expiry has passed at now.
func (k *Key) Expired(now time.Time) bool {
	return !k.ExpireTime.IsZero() && !now.Before(k.ExpireTime)
}

// Clone returns a deep copy, so a cached key can be handed out without sharing.
func (k *Key) Clone() *Key {
	c := *k
	c.Roles = slices.Clone(k.Roles)
	c.Permissions = slices.Clone(k.Permissions)
	c.AllowedCIDRs = slices.Clone(k.AllowedCIDRs)
	c.AllowedCountries = slices.Clone(k.AllowedCountries)
	c.DeniedCountries = slices.Clone(k.DeniedCountries)
	c.AllowedAudiences = slices.Clone(k.AllowedAudiences)
	c.SecretHash = slices.Clone(k.SecretHash)
	c.PreviousSecretHash = slices.Clone(k.PreviousSecretHash)
	if k.Metadata != nil {
		c.Metadata = make(map[string]string, len(k.Metadata))
		for m, v := range k.Metadata {
			c.Metadata[m] = v
		}
	}
	if k.RateLimit != nil {
		r := *k.RateLimit
		c.RateLimit = &r
	}
	if k.Quota != nil {
		q := *k.Quota
		c.Quota = &q
	}
	return &c
}

// KeyStateFilter selects keys by effective state.
type KeyStateFilter string

// Key state filters. KeyFilterActive means stored active and not expired at the
// filter's Now; KeyFilterExpired means stored active and expired at Now.
const (
	KeyFilterAny     KeyStateFilter = ""
	KeyFilterActive  KeyStateFilter = "active"
	KeyFilterRevoked KeyStateFilter = "revoked"
	KeyFilterExpired KeyStateFilter = "expired"
)

// KeyFilter selects keys; zero fields match everything.
type KeyFilter struct {
	Owner       string
	Environment Environment
	// Role selects the keys that name the role (whether or not it exists now).
	Role  string
	State KeyStateFilter
	// Now is the time expiry is judged at; required when State is active or expired.
	Now time.Time
}

// Validate refuses a filter no engine can apply: an unknown State, or one that
// judges expiry without the Now to judge it at.
func (f KeyFilter) Validate() error {
	switch f.State {
	case KeyFilterAny, KeyFilterRevoked:
		return nil
	case KeyFilterActive, KeyFilterExpired:
		if f.Now.IsZero() {
			return fmt.Errorf("key filter: state %q needs the time to judge expiry at", f.State)
		}
		return nil
	}
	return fmt.Errorf("key filter: unknown state %q", f.State)
}

// KeyCursor is a position in the key listing order: CreateTime descending, then ID
// descending.
type KeyCursor struct {
	CreateTime time.Time
	ID         string
}

// Role is a named set of permissions.
type Role struct {
	Name        string
	Description string
	Permissions []string
	CreateTime  time.Time
	UpdateTime  time.Time
	// Version is the optimistic concurrency token, as for keys.
	Version int64
}

// SigningKey is a key that signs access tokens. Its private part is stored sealed
// (encrypted by the service under the master key); the store treats it as opaque.
type SigningKey struct {
	Kid       string
	Algorithm string // HS256, RS256, ES256 or EdDSA
	// SealedPrivate is the encrypted private key (or HMAC secret).
	SealedPrivate []byte
	// Public is the DER-encoded public key; nil for HS256.
	Public     []byte
	CreateTime time.Time
}

// RefreshToken is a stored refresh token: its secret only as a hash, the rights the
// access tokens minted from it carry, and its family (every token descended from one
// IssueToken).
type RefreshToken struct {
	ID          string
	FamilyID    string
	KeyID       string
	Hash        []byte
	Audience    []string
	Roles       []string
	Permissions []string
	// SecretFingerprint is the start of the hash of the key secret that began the
	// family: a session lasts only while its key still accepts that secret.
	SecretFingerprint []byte
	CreateTime        time.Time
	ExpireTime        time.Time
	FamilyExpireTime  time.Time
}

// TemporaryToken is a stored temporary token for one named operation.
type TemporaryToken struct {
	ID    string
	KeyID string
	// TokenID and SessionID name the access token that issued it (its jti and
	// refresh family), when a token rather than the key itself did: revoking that
	// token or family revokes this one too. Empty when the key issued it.
	TokenID   string
	SessionID string
	// SecretFingerprint names the key secret that issued it (when a key did): the
	// token lasts only while the key still accepts that secret.
	SecretFingerprint []byte
	Operation         string
	Hash              []byte
	MaxUses           int
	CreateTime        time.Time
	ExpireTime        time.Time
}

// Revocation kinds.
const (
	RevokedAPIKey           = "api_key"
	RevokedAccessToken      = "access_token"
	RevokedRefreshFamily    = "refresh_family"
	RevokedSigningKey       = "signing_key"
	RevokedKeyRightsReduced = "key_rights_reduced"
	// RevokedKeySecretRotated: a key's secret changed; what was cached of its
	// previous secret is stale (tokens it issued are not affected).
	RevokedKeySecretRotated = "key_secret_rotated"
)

// Revocation is one entry of the ordered, durable revocation log.
type Revocation struct {
	// Sequence is assigned by AppendRevocation: strictly increasing, no gaps.
	Sequence   uint64
	Kind       string
	SubjectID  string
	RevokeTime time.Time
	// RelevantUntil is when the revoked thing would have expired anyway; after it
	// the entry may be pruned.
	RelevantUntil time.Time
	Reason        string
}

// AuditEvent records one request. It never holds a secret: credential headers are
// dropped or replaced by a keyed HMAC before they get here.
type AuditEvent struct {
	// ID orders events by time: events sort by ID as they sort by Time.
	ID           string
	Time         time.Time
	RequestID    string
	Method       string
	HTTPMethod   string
	HTTPRoute    string
	CallerKeyID  string
	TokenID      string
	Subject      string
	ClientIP     string
	UserAgent    string
	Headers      map[string]string
	Code         string
	HTTPStatus   int32
	DenialReason string
	Latency      time.Duration
	// Authenticated marks the event of a call that carried a valid credential and
	// was not throttled (RESOURCE_EXHAUSTED). The others (calls without a valid
	// credential, throttled calls) are stored under a bound of their own, so that no
	// flood of them can push these out.
	Authenticated bool
	// Throttled marks a refusal by the failure limiter: too many failed
	// authentications from the call's client network.
	Throttled bool
	// Count is how many calls the event stands for: 0 or 1 for a call of its own;
	// more for throttled refusals recorded together, one event per client network,
	// method and window, from Time (the first call) to EndTime (the last).
	Count   int64
	EndTime time.Time
}

// AuditBounds are the most bytes each kind of stored request event may take.
type AuditBounds struct {
	// Authenticated bounds the events of authenticated calls; Unauthenticated the
	// others.
	Authenticated, Unauthenticated int64
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	CallerKeyID, Method, Code, ClientIP, Subject string
	// Start (inclusive) and End (exclusive) bound the time.
	Start, End time.Time
}

// KeyEvent is one change in the life of a key, kept for ever.
type KeyEvent struct {
	// ID orders a key's events by time.
	ID            string
	KeyID         string
	Action        string // created, updated, rotated, revoked, role_granted, role_removed
	Time          time.Time
	ActorKeyID    string
	ActorIP       string
	Reason        string
	ChangedFields []string
}
