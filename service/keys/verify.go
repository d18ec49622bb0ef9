package keys

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/permission"
)

// Reason is the outcome of a verification.
type Reason int

// Verification outcomes.
const (
	ReasonOK Reason = iota + 1
	ReasonMalformed
	ReasonNotFound
	ReasonSecretMismatch
	ReasonRotated
	ReasonRevoked
	ReasonExpired
	ReasonPermissionDenied
	ReasonEnvironmentMismatch
	ReasonIPNotAllowed
	ReasonCountryNotAllowed
)

var reasonMessages = map[Reason]string{
	ReasonOK:                  "the key is valid",
	ReasonMalformed:           "the secret is not a well-formed Keyward API key",
	ReasonNotFound:            "no key matches this secret",
	ReasonSecretMismatch:      "the secret does not match the key",
	ReasonRotated:             "the secret was rotated out and its grace period is over",
	ReasonRevoked:             "the key was revoked",
	ReasonExpired:             "the key has expired",
	ReasonPermissionDenied:    "the key does not hold the required permission",
	ReasonEnvironmentMismatch: "the secret's environment does not match the key's",
	ReasonIPNotAllowed:        "the client address is outside the key's allowed networks",
	ReasonCountryNotAllowed:   "the key may not be used from the client's country",
}

// Message is a human-readable explanation of the reason.
func (r Reason) Message() string { return reasonMessages[r] }

// Verification is the verdict on a secret. Key, Effective and Permissions are
// shared with the cache and must not be modified. It holds only what the caller
// may see: key data on success, or on a failure for a caller who may read the
// key's owner's keys; to any other caller a wrong secret or environment reads as
// ReasonNotFound, as a key id that does not exist does.
type Verification struct {
	Reason Reason
	// Subject is the key id the secret names (whether or not such a key exists):
	// for the audit log, not for the caller.
	Subject string
	// Key is the key the secret names, when it exists and may be shown.
	Key *Key
	// Effective is the key's effective permissions (direct and through roles).
	Effective   []string
	Permissions permission.Set
	// SecretExpireTime is set when the secret is a previous one in its grace period.
	SecretExpireTime time.Time
	// Fingerprint identifies the secret (the start of its hash), on success.
	Fingerprint [apikey.FingerprintLen]byte
	// Country is the client's country, when a geographic restriction looked it up.
	Country string
	// Detail adds to the reason's message (for example why a country check failed).
	Detail string
	// RateLimited is set for keys with a rate limit: RateRemaining requests are left
	// in the burst, which is full again at RateReset.
	RateLimited   bool
	RateRemaining uint32
	RateReset     time.Time
	// QuotaLimited is set for keys with a quota: QuotaRemaining uses are left until
	// QuotaReset (zero: never refilled).
	QuotaLimited   bool
	QuotaRemaining uint64
	QuotaReset     time.Time
}

// Message explains the verdict.
func (v Verification) Message() string {
	if v.Detail != "" {
		return v.Reason.Message() + ": " + v.Detail
	}
	return v.Reason.Message()
}

// Valid reports whether the verdict is OK.
func (v Verification) Valid() bool { return v.Reason == ReasonOK }

// Verify checks a secret, then the check: the client address against the key's
// networks and countries, and the required permission; then it counts the use
// against the key's rate limit and quota. A repeat verification of a known key reads
// only memory (unless the key has a quota, which is counted in the store); the store
// is read on the first verification of a key, after a change to it, and after the
// cache TTL. It returns an error for a bad required permission, an exhausted rate
// limit or quota (RESOURCE_EXHAUSTED), or a store failure.
func (s *Keys) Verify(ctx context.Context, secret string, check Check) (Verification, error) {
	v, err := s.verify(ctx, secret, check)
	if err != nil {
		return v, err
	}
	s.stats.verified(v.Reason)
	if !v.Valid() && v.Key != nil && !MayRead(ctx, v.Key.Owner()) {
		v = Verification{Reason: v.Reason, Subject: v.Subject, Country: v.Country, Detail: v.Detail}
		if v.Reason == ReasonSecretMismatch || v.Reason == ReasonEnvironmentMismatch {
			v.Reason = ReasonNotFound
		}
	}
	return v, nil
}

func (s *Keys) verify(ctx context.Context, secret string, check Check) (Verification, error) {
	required := check.Permission
	var need permission.Permission
	if required != "" {
		var err error
		if need, err = permission.Parse(required); err != nil {
			return Verification{}, errs.InvalidArgument("required_permission", "%v", err)
		}
	}
	parsed, err := apikey.Parse(secret)
	if err != nil {
		return Verification{Reason: ReasonMalformed}, nil
	}
	now := s.now()
	h := apikey.HashOf(secret)
	e := s.cache.get(parsed.KeyID, now)
	if e != nil {
		s.stats.CacheHits.Add(1)
	} else {
		s.stats.CacheMisses.Add(1)
		if e, err = s.load(ctx, parsed.KeyID, now); err != nil {
			return Verification{}, err
		}
		if e == nil {
			return Verification{Reason: ReasonNotFound, Subject: parsed.KeyID}, nil
		}
	}
	k := &e.key
	v := Verification{Subject: parsed.KeyID, Key: k, Effective: e.rights.effective, Permissions: e.rights.perms}
	// The hash covers the whole secret, environment prefix included, and is
	// compared first: what a wrong secret learns does not depend on which part of
	// it is wrong.
	switch {
	case apikey.Equal(h, k.secret()):
	case apikey.Equal(h, k.previous()):
		end := k.previousExpire.time()
		if !now.Before(end) {
			v.Reason = ReasonRotated
			return v, nil
		}
		v.SecretExpireTime = end
	case parsed.Env != string(k.profile.environment):
		v.Reason = ReasonEnvironmentMismatch
		return v, nil
	default:
		v.Reason = ReasonSecretMismatch
		return v, nil
	}
	switch {
	case k.Revoked():
		v.Reason = ReasonRevoked
		return v, nil
	case k.Expired(now):
		v.Reason = ReasonExpired
		return v, nil
	}
	if r := s.CheckPlace(e, check.ClientIP, &v); r != ReasonOK {
		v.Reason = r
		return v, nil
	}
	if required != "" && !e.rights.perms.Allows(need) {
		v.Reason = ReasonPermissionDenied
		return v, nil
	}
	if err := s.Spend(ctx, e, now, &v); err != nil {
		return v, err
	}
	if ms := now.UnixMilli(); ms-e.lastUsed.Load() >= 1000 {
		e.lastUsed.Store(ms)
	}
	v.Reason, v.Fingerprint = ReasonOK, apikey.Fingerprint(h)
	return v, nil
}

// load reads a key and its roles into the cache; nil when the key does not exist.
func (s *Keys) load(ctx context.Context, id string, now time.Time) (*Snapshot, error) {
	gen := s.cache.generation()
	var seq uint64
	if s.revs != nil {
		// Read before the key: a change whose log entry is published by now was
		// stored before it, so the key read next reflects it.
		seq = s.revs.LatestSequence()
	}
	k, err := s.keys.GetKey(ctx, id)
	if errors.Is(err, repository.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	effective := append([]string(nil), k.Permissions...)
	for _, name := range k.Roles {
		r, err := s.roles.GetRole(ctx, name)
		if errors.Is(err, repository.ErrNotFound) {
			continue // a deleted role grants nothing
		}
		if err != nil {
			return nil, err
		}
		effective = append(effective, r.Permissions...)
	}
	e := s.newSnapshot(ctx, k, effective, seq, now)
	s.cache.put(k.ID, e, gen) // keyed by the stored id: a secret's substring would keep the secret in memory
	return e, nil
}

// newSnapshot builds the cached view of k as read at log position seq, with
// effective its permissions direct and through roles (duplicates allowed). k is
// the caller's no more: its slices and maps may be kept.
func (s *Keys) newSnapshot(ctx context.Context, k *repository.Key, effective []string, seq uint64, now time.Time) *Snapshot {
	r, found := s.cache.shareRights(dedupe(effective), func(effective []string) permission.Set {
		perms := make(permission.Set, 0, len(effective))
		for _, p := range effective {
			parsed, err := permission.Parse(p)
			if err != nil {
				s.log.WarnContext(ctx, "ignoring a stored permission that does not parse", "key_id", k.ID, "error", err)
				continue
			}
			perms = append(perms, parsed)
		}
		return perms
	})
	if found && len(r.perms) < len(r.effective) {
		s.log.WarnContext(ctx, "ignoring stored permissions that do not parse", "key_id", k.ID, "count", len(r.effective)-len(r.perms))
	}
	p := s.cache.shareProfile(k)
	e := s.cache.newSlot()
	e.key, e.rights, e.bucket, e.seq, e.filled = newKey(k, p), r, p.policy.Bucket(k.ID, s.limiters), seq, now.UnixNano()
	return e
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Snapshot returns the cached view of a key (loading it when needed), or nil when the
// key does not exist. It never checks a secret: callers have authenticated otherwise.
func (s *Keys) Snapshot(ctx context.Context, id string) (*Snapshot, error) {
	now := s.now()
	if e := s.cache.get(id, now); e != nil {
		return e, nil
	}
	return s.load(ctx, id, now)
}
