package keys

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/policy"
)

// Key is a stored key as the key cache holds it: what is its own (its id, name,
// secret hashes and times) in one allocation, and what many keys hold alike (its
// owner, state, permissions, restrictions, metadata) in a profile shared by every
// cached key that holds the same. Other domains read it through its methods only,
// and must not modify what they return: it is shared by every verification of the
// key. Stored rebuilds the key as stored.
type Key struct {
	// text is the key's own strings in one allocation (each object a cached
	// key holds is one more the garbage collector visits on every cycle): its
	// id (text[:nameAt]), name (text[nameAt:reasonAt]) and revoke reason
	// (text[reasonAt:]).
	text             string
	profile          *profile
	nameAt, reasonAt uint32

	// hashes says which of secretHash and previousHash are set: a stored hash of
	// any other length than SHA-256's matches no secret, and is dropped.
	hashes       uint8
	secretHash   [hashLen]byte
	previousHash [hashLen]byte

	// Times, as stored.
	expire, rotate, previousExpire stamp
	create, update, lastUsed       stamp
	revoke                         stamp

	version int64
}

const (
	hashLen = 32 // SHA-256

	hasSecret   uint8 = 1
	hasPrevious uint8 = 2
)

// profile is what a key holds that many keys hold alike (read-only). Two keys
// share one only when every field is equal (profileName).
type profile struct {
	owner       string
	environment repository.Environment
	state       repository.KeyState
	createdBy   string

	roles            []string
	permissions      []string
	allowedCIDRs     []string
	allowedCountries []string
	deniedCountries  []string
	allowedAudiences []string
	metadata         map[string]string
	rateLimit        *repository.RateLimit
	quota            *repository.Quota
	maxTokenTTL      time.Duration

	// policy is the restrictions above, parsed.
	policy *policy.Policy
}

// newProfile returns k's profile (sharing k's slices and maps, which the caller
// gives up).
func newProfile(k *repository.Key) *profile {
	return &profile{
		owner: k.Owner, environment: k.Environment, state: k.State, createdBy: k.CreatedBy,
		roles: slices.Clip(k.Roles), permissions: slices.Clip(k.Permissions), allowedCIDRs: slices.Clip(k.AllowedCIDRs),
		allowedCountries: slices.Clip(k.AllowedCountries), deniedCountries: slices.Clip(k.DeniedCountries),
		allowedAudiences: slices.Clip(k.AllowedAudiences), metadata: k.Metadata, rateLimit: k.RateLimit, quota: k.Quota,
		maxTokenTTL: k.MaxTokenTTL, policy: policy.New(k),
	}
}

// profileName encodes every field of k's profile, so that two keys share a
// profile only when they hold the same.
func profileName(k *repository.Key) string {
	var n name
	n.str(k.Owner).str(string(k.Environment)).str(string(k.State)).str(k.CreatedBy)
	n.strs(k.Roles).strs(k.Permissions).strs(k.AllowedCIDRs).strs(k.AllowedCountries).strs(k.DeniedCountries).strs(k.AllowedAudiences)
	n.num(uint64(len(k.Metadata)))
	for _, m := range slices.Sorted(maps.Keys(k.Metadata)) {
		n.str(m).str(k.Metadata[m])
	}
	if n.flag(k.RateLimit != nil) {
		n.num(uint64(k.RateLimit.RequestsPerSecond)).num(uint64(k.RateLimit.Burst))
	}
	if n.flag(k.Quota != nil) {
		n.num(k.Quota.Limit).str(k.Quota.Period)
	}
	n.str(strconv.FormatInt(int64(k.MaxTokenTTL), 10))
	return n.String()
}

// newKey returns the cached form of k, with p its profile.
func newKey(k *repository.Key, p *profile) Key {
	// A stored key's strings are far below 4 GiB (a MongoDB document is at most
	// 16 MiB; the API bounds every field).
	nameAt, reasonAt := uint32(len(k.ID)), uint32(len(k.ID)+len(k.Name)) //nolint:gosec // bounded, as said
	c := Key{
		text: k.ID + k.Name + k.RevokeReason, nameAt: nameAt, reasonAt: reasonAt, profile: p,
		expire: stampOf(k.ExpireTime), rotate: stampOf(k.SecretRotateTime), previousExpire: stampOf(k.PreviousSecretExpireTime),
		create: stampOf(k.CreateTime), update: stampOf(k.UpdateTime), lastUsed: stampOf(k.LastUsedTime), revoke: stampOf(k.RevokeTime),
		version: k.Version,
	}
	if len(k.SecretHash) == hashLen {
		c.secretHash, c.hashes = [hashLen]byte(k.SecretHash), c.hashes|hasSecret
	}
	if len(k.PreviousSecretHash) == hashLen {
		c.previousHash, c.hashes = [hashLen]byte(k.PreviousSecretHash), c.hashes|hasPrevious
	}
	return c
}

// ID is the key's id.
func (k *Key) ID() string { return k.text[:k.nameAt] }

// name is the key's name.
func (k *Key) name() string { return k.text[k.nameAt:k.reasonAt] }

// revokeReason is the reason the key was revoked with, if any.
func (k *Key) revokeReason() string { return k.text[k.reasonAt:] }

// Owner is the key's owner.
func (k *Key) Owner() string { return k.profile.owner }

// Environment is the key's environment.
func (k *Key) Environment() repository.Environment { return k.profile.environment }

// Revoked reports whether the key is stored revoked.
func (k *Key) Revoked() bool { return k.profile.state == repository.KeyRevoked }

// Expired reports whether the key's expiry has passed at now.
func (k *Key) Expired(now time.Time) bool {
	return k.expire != zeroStamp && !now.Before(k.expire.time())
}

// ExpireTime is when the key stops verifying; zero: never.
func (k *Key) ExpireTime() time.Time { return k.expire.time() }

// Roles is the roles the key names.
func (k *Key) Roles() []string { return k.profile.roles }

// Permissions is the key's direct permissions.
func (k *Key) Permissions() []string { return k.profile.permissions }

// AllowedCIDRs is the networks the key may be used from; empty: any.
func (k *Key) AllowedCIDRs() []string { return k.profile.allowedCIDRs }

// AllowedAudiences limits the audiences of access tokens issued to the key; empty: any.
func (k *Key) AllowedAudiences() []string { return k.profile.allowedAudiences }

// MaxTokenTTL caps the lifetime of access tokens issued to the key; zero: the server's.
func (k *Key) MaxTokenTTL() time.Duration { return k.profile.maxTokenTTL }

// AllowedCountries is the countries the key may be used from; empty: any.
func (k *Key) AllowedCountries() []string { return k.profile.allowedCountries }

// DeniedCountries is the countries the key may not be used from.
func (k *Key) DeniedCountries() []string { return k.profile.deniedCountries }

// RateLimit is the key's rate limit; nil: none.
func (k *Key) RateLimit() *repository.RateLimit { return k.profile.rateLimit }

// Quota is the key's quota; nil: none.
func (k *Key) Quota() *repository.Quota { return k.profile.quota }

// Stored returns the key as stored, by value (a caller that keeps it on its
// stack allocates nothing); its slices and maps are shared with the cache
// (read-only).
func (k *Key) Stored() repository.Key {
	p := k.profile
	out := repository.Key{
		ID: k.ID(), Name: k.name(), Owner: p.owner, Environment: p.environment, State: p.state,
		Roles: p.roles, Permissions: p.permissions, AllowedCIDRs: p.allowedCIDRs, AllowedCountries: p.allowedCountries,
		DeniedCountries: p.deniedCountries, Metadata: p.metadata, RateLimit: p.rateLimit, Quota: p.quota,
		ExpireTime: k.expire.time(), AllowedAudiences: p.allowedAudiences, MaxTokenTTL: p.maxTokenTTL,
		SecretRotateTime: k.rotate.time(), PreviousSecretExpireTime: k.previousExpire.time(),
		CreateTime: k.create.time(), UpdateTime: k.update.time(), LastUsedTime: k.lastUsed.time(), RevokeTime: k.revoke.time(),
		RevokeReason: k.revokeReason(), CreatedBy: p.createdBy, Version: k.version,
	}
	if k.hashes&hasSecret != 0 {
		out.SecretHash = k.secretHash[:]
	}
	if k.hashes&hasPrevious != 0 {
		out.PreviousSecretHash = k.previousHash[:]
	}
	return out
}

// secret is the hash of the key's current secret; nil when none is stored.
func (k *Key) secret() []byte {
	if k.hashes&hasSecret == 0 {
		return nil
	}
	return k.secretHash[:]
}

// previous is the hash of the secret the last rotation replaced; nil when none.
func (k *Key) previous() []byte {
	if k.hashes&hasPrevious == 0 {
		return nil
	}
	return k.previousHash[:]
}

// stamp is a stored time in Unix milliseconds (stores keep milliseconds, in UTC),
// or zeroStamp for the zero time.
type stamp int64

const zeroStamp stamp = math.MinInt64

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return zeroStamp
	}
	return stamp(t.UnixMilli())
}

func (s stamp) time() time.Time {
	if s == zeroStamp {
		return time.Time{}
	}
	return time.UnixMilli(int64(s)).UTC()
}
