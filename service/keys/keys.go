package keys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/audit"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/permission"
	"github.com/keyward/keyward/service/policy"
	"github.com/keyward/keyward/service/revocation"
)

// Config tunes the key service.
type Config struct {
	// CacheTTL bounds how long a change made on another instance can go unseen:
	// a cached verification is trusted for CacheTTL after the key was read, and
	// after that, up to CacheMaxAge, only while the revocation log (which carries
	// every change that can take a right away) is known followed within CacheTTL.
	CacheTTL time.Duration
	// CacheMaxAge is how long a cached key is kept before it is read again in any
	// case (its name and metadata, which the log does not carry, may be that old);
	// at least CacheTTL, which it is without Revocations.
	CacheMaxAge time.Duration
	// CacheSize is the most keys kept in the verification cache.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Revocations, when set, receives every key revocation, change of rights and
	// rotation, and tells the cache of those made by other instances.
	Revocations *revocation.Log
	// RevokedKeyRelevance is how long a key revocation stays in the revocation log
	// (at least the longest refresh-token family lifetime); default 90 days.
	RevokedKeyRelevance time.Duration
	// Geo resolves client countries; nil fails every country restriction closed.
	Geo policy.CountryResolver
	// Audit, when set, receives the permanent history of every key.
	Audit *audit.Log
	// Stats, when set, counts verifications; otherwise a private one is used.
	Stats *Stats
}

// Keys is the API key use case: create, read, update, rotate, revoke and verify.
type Keys struct {
	keys      repository.KeyRepository
	roles     repository.RoleRepository
	cache     *keyCache
	now       func() time.Time
	log       *slog.Logger
	revs      *revocation.Log
	relevance time.Duration
	geo       policy.CountryResolver
	limiters  *policy.Limiters
	audit     *audit.Log
	stats     *Stats
}

// caughtUp is when the revocation log was last known complete; nil without one.
func caughtUp(revs *revocation.Log) func() time.Time {
	if revs == nil {
		return nil
	}
	return revs.CaughtUp
}

// New returns the key service over the store's repositories.
func New(store repository.Store, cfg Config, log *slog.Logger) *Keys {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100_000
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if cfg.RevokedKeyRelevance <= 0 {
		cfg.RevokedKeyRelevance = 90 * 24 * time.Hour
	}
	k := &Keys{
		keys:      store.Keys(),
		roles:     store.Roles(),
		cache:     newKeyCache(cfg.CacheTTL, cfg.CacheMaxAge, caughtUp(cfg.Revocations), cfg.CacheSize),
		limiters:  policy.NewLimiters(cfg.CacheSize),
		now:       func() time.Time { return now().UTC().Truncate(time.Millisecond) },
		log:       log,
		revs:      cfg.Revocations,
		relevance: cfg.RevokedKeyRelevance,
		geo:       cfg.Geo,
		audit:     cfg.Audit,
		stats:     cfg.Stats,
	}
	if k.stats == nil {
		k.stats = &Stats{}
	}
	if k.revs != nil {
		k.revs.OnKeyRevoked(k.revoked)
	}
	return k
}

// revoked drops what the cache holds of a revoked subject: a key, or every key
// when a role changed (any key may hold it).
func (s *Keys) revoked(subject string) {
	if strings.HasPrefix(subject, RoleSubjectPrefix) {
		s.cache.loggedRoles(s.now())
		return
	}
	s.cache.logged(subject, s.now())
}

// Now is the key service's clock, in UTC at the millisecond precision the store
// keeps times at: the services that work with keys (roles, tokens) read it so
// that every time they store agrees with the keys'.
func (s *Keys) Now() time.Time { return s.now() }

// Stats returns the service's counters.
func (s *Keys) Stats() *Stats { return s.stats }

// KeyInput holds the caller-settable fields of a key.
type KeyInput struct {
	Name             string
	Owner            string
	Environment      repository.Environment
	Roles            []string
	Permissions      []string
	AllowedCIDRs     []string
	AllowedCountries []string
	DeniedCountries  []string
	ExpireTime       time.Time
	Metadata         map[string]string
	RateLimit        *repository.RateLimit
	Quota            *repository.Quota
	AllowedAudiences []string
	MaxTokenTTL      time.Duration
}

// Create creates a key and returns it with its secret, which is never stored.
func (s *Keys) Create(ctx context.Context, in KeyInput) (*repository.Key, string, error) {
	if in.Environment != repository.EnvironmentLive && in.Environment != repository.EnvironmentTest {
		return nil, "", errs.InvalidArgument("environment", "must be live or test")
	}
	now := s.now()
	if !in.ExpireTime.IsZero() && !in.ExpireTime.After(now) {
		return nil, "", errs.InvalidArgument("expire_time", "must be in the future")
	}
	if !mayManage(ctx, "create", in.Owner) {
		return nil, "", errs.PermissionDenied("the calling key may not create keys for owner %q", in.Owner)
	}
	cidrs, err := canonicalCIDRs(in.AllowedCIDRs)
	if err != nil {
		return nil, "", err
	}
	if err := checkQuota(in.Quota); err != nil {
		return nil, "", err
	}
	granted, err := s.permissionsOf(ctx, in.Roles, in.Permissions, true)
	if err != nil {
		return nil, "", err
	}
	k := &repository.Key{
		Name:             in.Name,
		Owner:            in.Owner,
		Environment:      in.Environment,
		State:            repository.KeyActive,
		Roles:            nilIfEmpty(in.Roles),
		Permissions:      nilIfEmpty(in.Permissions),
		AllowedCIDRs:     cidrs,
		AllowedCountries: nilIfEmpty(in.AllowedCountries),
		DeniedCountries:  nilIfEmpty(in.DeniedCountries),
		Metadata:         in.Metadata,
		RateLimit:        in.RateLimit,
		Quota:            in.Quota,
		AllowedAudiences: nilIfEmpty(in.AllowedAudiences),
		MaxTokenTTL:      in.MaxTokenTTL.Truncate(time.Millisecond),
		ExpireTime:       in.ExpireTime.UTC().Truncate(time.Millisecond),
		SecretRotateTime: now,
		CreateTime:       now,
		UpdateTime:       now,
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
	h := authz.HoldingOf(k, granted)
	h.NewBuckets = true
	if short := authz.MayHold(ctx, h); short != nil {
		return nil, "", errs.PermissionDenied("%s", short)
	}
	if p := authz.PrincipalFrom(ctx); p != nil {
		k.CreatedBy = p.KeyID
	}
	// An 80-bit id collides with negligible probability; retry anyway rather than fail.
	for attempt := 0; ; attempt++ {
		k.ID = apikey.NewID()
		secret, err := apikey.New(string(k.Environment), k.ID)
		if err != nil {
			return nil, "", err
		}
		h := apikey.HashOf(secret)
		k.SecretHash = h[:]
		err = s.keys.CreateKey(ctx, k)
		if errors.Is(err, repository.ErrAlreadyExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		s.log.InfoContext(ctx, "key created", "key_id", k.ID, "owner", k.Owner, "environment", k.Environment, "created_by", k.CreatedBy)
		s.history(ctx, k.ID, "created", "", nil)
		for _, r := range k.Roles {
			s.history(ctx, k.ID, "role_granted", r, nil)
		}
		return k, secret, nil
	}
}

// Get returns a key with its effective state.
func (s *Keys) Get(ctx context.Context, id string) (*repository.Key, error) {
	if !apikey.ValidID(id) {
		return nil, errs.InvalidArgument("key_id", "must be 16 characters of a-z and 2-7")
	}
	k, err := s.keys.GetKey(ctx, id)
	if errors.Is(err, repository.ErrNotFound) || (err == nil && !mayManage(ctx, "read", k.Owner)) {
		return nil, errs.NotFound("key %q not found", id) // keys the caller may not read do not exist for it
	}
	return k, err
}

// keysModule is the permission module of Keyward's key management.
const keysModule = "keyward.keys"

// mayManage reports whether the caller may do action on keys of owner: a grant of
// the action for every owner (`keyward.keys:read`) or for that owner
// (`keyward.keys/acme:read`). Internal calls (no caller) may.
func mayManage(ctx context.Context, action, owner string) bool {
	p := authz.PrincipalFrom(ctx)
	return p == nil || p.Allows(permission.Permission{Module: keysModule, Entity: owner, Action: action})
}

// mayManageAll reports whether the caller may do action on every owner's keys.
func mayManageAll(ctx context.Context, action string) bool {
	p := authz.PrincipalFrom(ctx)
	return p == nil || p.Allows(permission.Permission{Module: keysModule, Action: action})
}

// MayRead reports whether an authenticated caller may read keys of owner; unlike
// mayManage it is false without a principal, as verification and token validation
// answer unauthenticated callers too: a failure shows key data only to a caller
// for whom MayRead holds.
func MayRead(ctx context.Context, owner string) bool {
	p := authz.PrincipalFrom(ctx)
	return p != nil && p.Allows(permission.Permission{Module: keysModule, Entity: owner, Action: "read"})
}

// ListKeysQuery selects a page of keys.
type ListKeysQuery struct {
	Filter    repository.KeyFilter
	PageSize  int
	PageToken string
}

// List returns a page of keys, newest first, and the token of the next page.
func (s *Keys) List(ctx context.Context, q ListKeysQuery) ([]*repository.Key, string, error) {
	size := q.PageSize
	if size <= 0 {
		size = 50
	}
	size = min(size, 1000)
	var after *repository.KeyCursor
	if q.PageToken != "" {
		c, err := decodeKeyCursor(q.PageToken)
		if err != nil {
			return nil, "", errs.InvalidArgument("page_token", "is not a token returned by ListKeys")
		}
		after = c
	}
	switch {
	case q.Filter.Owner != "" && !mayManage(ctx, "read", q.Filter.Owner):
		return nil, "", errs.PermissionDenied("the calling key may not read keys of owner %q", q.Filter.Owner)
	case q.Filter.Owner == "" && !mayManageAll(ctx, "read"):
		return nil, "", errs.PermissionDenied("the calling key may read only some owners' keys: set owner")
	}
	q.Filter.Now = s.now()
	keys, err := s.keys.ListKeys(ctx, q.Filter, size+1, after)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(keys) > size {
		keys = keys[:size]
		last := keys[size-1]
		next = encodeKeyCursor(repository.KeyCursor{CreateTime: last.CreateTime, ID: last.ID})
	}
	return keys, next, nil
}

// Update changes the fields of a key named by paths (proto field names).
func (s *Keys) Update(ctx context.Context, id string, in KeyInput, paths []string) (*repository.Key, error) {
	if len(paths) == 0 {
		return nil, errs.InvalidArgument("update_mask", "must name at least one field")
	}
	for _, p := range paths {
		if !slices.Contains(updatablePaths, p) {
			return nil, errs.InvalidArgument("update_mask", "field %q cannot be updated; updatable: %s", p, strings.Join(updatablePaths, ", "))
		}
	}
	if slices.Contains(paths, "quota") {
		if err := checkQuota(in.Quota); err != nil {
			return nil, err
		}
	}
	has := func(p string) bool { return slices.Contains(paths, p) }
	if has("name") && in.Name == "" {
		return nil, errs.InvalidArgument("key.name", "must not be empty")
	}
	if has("owner") && in.Owner == "" {
		return nil, errs.InvalidArgument("key.owner", "must not be empty")
	}
	cidrs, err := canonicalCIDRs(in.AllowedCIDRs)
	if err != nil {
		return nil, err
	}
	if has("expire_time") && !in.ExpireTime.IsZero() && !in.ExpireTime.After(s.now()) {
		return nil, errs.InvalidArgument("key.expire_time", "must be in the future")
	}
	var oldRoles, roles, perms []string
	if has("roles") {
		roles = in.Roles
	}
	if has("permissions") {
		perms = in.Permissions
	}
	// The new rights must parse and name existing roles; whether the caller may
	// grant them is judged with the rest of the key below.
	if _, err := s.permissionsOf(ctx, roles, perms, true); err != nil {
		return nil, err
	}
	if has("owner") && !mayManage(ctx, "update", in.Owner) {
		return nil, errs.PermissionDenied("the calling key may not move keys to owner %q", in.Owner)
	}
	var entry *logEntry
	for _, p := range paths {
		if slices.Contains(rightsPaths, p) {
			// A change of rights may take away what a cached verification elsewhere allowed.
			entry = &logEntry{kind: repository.RevokedKeyRightsReduced, reason: "rights changed", after: true}
			break
		}
	}
	k, err := s.modify(ctx, id, "update", entry, func(k *repository.Key) error {
		if k.State == repository.KeyRevoked {
			return errs.FailedPrecondition("key %q is revoked and cannot be changed", id)
		}
		// Changing a key needs every right and freedom it holds, before and after.
		if err := s.mayHoldKey(ctx, k, "changing"); err != nil {
			return err
		}
		oldRoles = slices.Clone(k.Roles)
		for _, p := range paths {
			switch p {
			case "name":
				k.Name = in.Name
			case "owner":
				k.Owner = in.Owner
			case "roles":
				k.Roles = nilIfEmpty(in.Roles)
			case "permissions":
				k.Permissions = nilIfEmpty(in.Permissions)
			case "allowed_cidrs":
				k.AllowedCIDRs = cidrs
			case "allowed_countries":
				k.AllowedCountries = nilIfEmpty(in.AllowedCountries)
			case "denied_countries":
				k.DeniedCountries = nilIfEmpty(in.DeniedCountries)
			case "expire_time":
				k.ExpireTime = in.ExpireTime.UTC().Truncate(time.Millisecond)
			case "metadata":
				k.Metadata = in.Metadata
				if len(k.Metadata) == 0 {
					k.Metadata = nil
				}
			case "rate_limit":
				k.RateLimit = in.RateLimit
			case "quota":
				k.Quota = in.Quota
			case "allowed_audiences":
				k.AllowedAudiences = nilIfEmpty(in.AllowedAudiences)
			case "max_token_ttl":
				k.MaxTokenTTL = in.MaxTokenTTL.Truncate(time.Millisecond)
			}
		}
		// Roles named by the request were checked to exist above; a stored role
		// missing since does not stop the update (but needs a caller holding all).
		h, err := s.holdingOfStored(ctx, k)
		if err != nil {
			return err
		}
		if short := authz.MayHold(ctx, h); short != nil {
			return errs.PermissionDenied("%s", short)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key updated", "key_id", id, "fields", paths)
	s.history(ctx, id, "updated", "", paths)
	for _, r := range k.Roles {
		if !slices.Contains(oldRoles, r) {
			s.history(ctx, id, "role_granted", r, nil)
		}
	}
	for _, r := range oldRoles {
		if !slices.Contains(k.Roles, r) {
			s.history(ctx, id, "role_removed", r, nil)
		}
	}
	return k, nil
}

var (
	updatablePaths = []string{"name", "owner", "roles", "permissions", "allowed_cidrs", "allowed_countries", "denied_countries", "expire_time",
		"metadata", "rate_limit", "quota", "allowed_audiences", "max_token_ttl"}
	// rightsPaths are the fields whose change may take away a right or add a
	// restriction: every instance and subscriber drops what it cached of the key,
	// and local validators refuse its older tokens.
	rightsPaths = []string{"owner", "roles", "permissions", "allowed_cidrs", "allowed_countries", "denied_countries", "expire_time",
		"rate_limit", "quota", "allowed_audiences", "max_token_ttl"}
)

// Revoke revokes a key at once. Revoking a revoked key changes nothing.
func (s *Keys) Revoke(ctx context.Context, id, reason string) (*repository.Key, error) {
	already := false
	entry := &logEntry{kind: repository.RevokedAPIKey, reason: reason, once: true}
	k, err := s.modify(ctx, id, "revoke", entry, func(k *repository.Key) error {
		if k.State == repository.KeyRevoked {
			already = true
			return errUnchanged
		}
		k.State = repository.KeyRevoked
		k.RevokeTime = s.now()
		k.RevokeReason = reason
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Once per key: a retried revocation whose log entry failed the first time gets
	// it now, and revoking again adds nothing.
	if already {
		entry.reason = k.RevokeReason
		if err := s.logChange(ctx, entry, k.ID, false); err != nil {
			return nil, err
		}
	}
	if !already {
		s.history(ctx, id, "revoked", k.RevokeReason, nil)
	}
	s.log.InfoContext(ctx, "key revoked", "key_id", id)
	return k, nil
}

// history appends to the key's permanent history. The change itself has happened,
// so a failure here is logged loudly rather than undoing or failing it.
func (s *Keys) history(ctx context.Context, keyID, action, reason string, changed []string) {
	if s.audit == nil {
		return
	}
	if err := s.audit.KeyEvent(ctx, keyID, action, reason, changed); err != nil {
		s.log.ErrorContext(ctx, "recording key history failed", "key_id", keyID, "action", action, "error", err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, repository.ErrNotFound) }

// Rotate gives a key a new secret. The previous one keeps verifying for grace.
func (s *Keys) Rotate(ctx context.Context, id string, grace time.Duration) (*repository.Key, string, error) {
	if grace < 0 {
		return nil, "", errs.InvalidArgument("grace_period", "must not be negative")
	}
	var secret string
	// Other instances drop what they cached of the previous secret.
	entry := &logEntry{kind: repository.RevokedKeySecretRotated, reason: "secret rotated"}
	k, err := s.modify(ctx, id, "rotate", entry, func(k *repository.Key) error {
		if k.State == repository.KeyRevoked {
			return errs.FailedPrecondition("key %q is revoked and cannot be rotated", id)
		}
		now := s.now()
		if k.Expired(now) {
			return errs.FailedPrecondition("key %q has expired and cannot be rotated", id)
		}
		// The new secret is the key itself: only a caller holding everything the
		// key holds may have it.
		if err := s.mayHoldKey(ctx, k, "rotating"); err != nil {
			return err
		}
		var err error
		secret, err = apikey.New(string(k.Environment), k.ID)
		if err != nil {
			return err
		}
		if grace > 0 {
			k.PreviousSecretHash = k.SecretHash
			k.PreviousSecretExpireTime = now.Add(grace).Truncate(time.Millisecond)
		} else {
			k.PreviousSecretHash = nil
			k.PreviousSecretExpireTime = time.Time{}
		}
		h := apikey.HashOf(secret)
		k.SecretHash = h[:]
		k.SecretRotateTime = now
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	s.log.InfoContext(ctx, "key rotated", "key_id", id, "grace_period", grace.String())
	s.history(ctx, id, "rotated", "grace period "+grace.String(), nil)
	return k, secret, nil
}

var errUnchanged = errors.New("unchanged")

// modify applies change to the stored key with optimistic concurrency, retrying when
// another writer got there first, and invalidates the cached verification. A
// change that needs every instance to drop what it cached (entry not nil) is
// written to the revocation log first, once the change is known to be allowed
// and valid: if the log cannot take it, the key is left as it was. It is logged
// again after the write when entry says so, or when the write landed later than
// a cache TTL after its entry (see keyCache); a failure then is logged.
func (s *Keys) modify(ctx context.Context, id, action string, entry *logEntry, change func(*repository.Key) error) (*repository.Key, error) {
	if !apikey.ValidID(id) {
		return nil, errs.InvalidArgument("key_id", "must be 16 characters of a-z and 2-7")
	}
	defer s.cache.invalidate(id)
	for {
		k, err := s.keys.GetKey(ctx, id)
		if errors.Is(err, repository.ErrNotFound) || (err == nil && !mayManage(ctx, "read", k.Owner) && !mayManage(ctx, action, k.Owner)) {
			return nil, errs.NotFound("key %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		if !mayManage(ctx, action, k.Owner) {
			return nil, errs.PermissionDenied("the calling key may not %s keys of owner %q", action, k.Owner)
		}
		switch err := change(k); {
		case errors.Is(err, errUnchanged):
			return k, nil
		case err != nil:
			return nil, err
		}
		var logged time.Time
		if entry != nil {
			if err := s.logChange(ctx, entry, id, false); err != nil {
				return nil, err
			}
			logged = s.now()
		}
		k.UpdateTime = s.now()
		err = s.keys.UpdateKey(ctx, k)
		if errors.Is(err, repository.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if entry != nil && (entry.after || s.now().Sub(logged) >= s.cache.ttl) {
			if err := s.logChange(ctx, entry, id, true); err != nil {
				s.log.ErrorContext(ctx, "logging a key change again after writing it", "key_id", id, "error", err)
			}
		}
		return k, nil
	}
}

// logEntry is the revocation log entry a change of a key is logged with.
type logEntry struct {
	kind, reason string
	// once: append unless an entry of this kind and key is in the log
	// (revocations, which happen once).
	once bool
	// after: logged again once written. A change of rights: a token carries
	// the log position its key was read at, and local validators refuse a
	// token older than the key's latest reduction; a key read between the
	// first entry and the write has the old rights and the first entry's
	// position, so only an entry after the write dates its tokens right.
	after bool
}

// logTimeout bounds a revocation log append, which does not end with the
// caller's context: a caller that hangs up or runs out of time after a change
// was logged does not keep it from being written.
const logTimeout = 5 * time.Second

// logChange appends entry for the key id; again: a second time (a plain append
// whatever once says).
func (s *Keys) logChange(ctx context.Context, entry *logEntry, id string, again bool) error {
	if s.revs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logTimeout)
	defer cancel()
	if entry.once && !again {
		return s.revs.AppendOnce(ctx, entry.kind, id, entry.reason, s.now().Add(s.relevance))
	}
	return s.revs.Append(ctx, entry.kind, id, entry.reason, s.now().Add(s.relevance))
}

// permissionsOf parses the permissions and resolves the roles of a key, and returns
// every permission they grant. strict is for a key about to be stored: a bad
// permission or a role that does not exist is then bad input; otherwise (a stored
// key) a deleted role grants nothing.
func (s *Keys) permissionsOf(ctx context.Context, roles, perms []string, strict bool) (permission.Set, error) {
	wanted, err := permission.ParseSet(perms)
	if err != nil {
		return nil, errs.InvalidArgument("permissions", "%v", err)
	}
	for _, name := range roles {
		r, err := s.roles.GetRole(ctx, name)
		if errors.Is(err, repository.ErrNotFound) {
			if !strict {
				continue
			}
			return nil, errs.InvalidArgument("roles", "role %q does not exist", name)
		}
		if err != nil {
			return nil, err
		}
		rp, err := permission.ParseSet(r.Permissions)
		if err != nil {
			return nil, fmt.Errorf("role %q holds a bad permission: %w", name, err)
		}
		wanted = append(wanted, rp...)
	}
	return wanted, nil
}

// RolePermissions returns the permissions the roles grant as stored, without
// duplicates; a deleted role grants nothing.
func (s *Keys) RolePermissions(ctx context.Context, roles []string) ([]string, error) {
	var perms []string
	for _, name := range roles {
		r, err := s.roles.GetRole(ctx, name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		perms = append(perms, r.Permissions...)
	}
	return dedupe(perms), nil
}

// HeldPermissions returns every permission the roles (of a stored key: a deleted
// one grants nothing) and the permissions grant, parsed.
func (s *Keys) HeldPermissions(ctx context.Context, roles, perms []string) (permission.Set, error) {
	return s.permissionsOf(ctx, roles, perms, false)
}

// mayHoldKey refuses (PERMISSION_DENIED) a caller who does not hold every right
// and freedom of the stored key k, for an action ("rotating", "changing") that
// would give it to the caller or let it act as the key's equal.
func (s *Keys) mayHoldKey(ctx context.Context, k *repository.Key, action string) error {
	if authz.PrincipalFrom(ctx) == nil {
		return nil
	}
	h, err := s.holdingOfStored(ctx, k)
	if err != nil {
		return err
	}
	if short := authz.MayHold(ctx, h); short != nil {
		return errs.PermissionDenied("%s key %s needs everything it holds: %s", action, k.ID, short)
	}
	return nil
}

// holdingOfStored describes a stored key. A role it names that does not exist
// grants nothing now, but would grant whatever a role created under that name
// grants: its rights are unbounded. (Deleting a role removes its name from its
// keys; a key can still name a missing role when it was given it while the role
// was being deleted.)
func (s *Keys) holdingOfStored(ctx context.Context, k *repository.Key) (authz.Holding, error) {
	perms, err := s.permissionsOf(ctx, k.Roles, k.Permissions, false)
	if err != nil {
		return authz.Holding{}, err
	}
	h := authz.HoldingOf(k, perms)
	for _, name := range k.Roles {
		if _, err := s.roles.GetRole(ctx, name); isNotFound(err) {
			h.MissingRole = name
			break
		} else if err != nil {
			return authz.Holding{}, err
		}
	}
	return h, nil
}

// roleRightsReduced records in the revocation log that the role's keys may have lost
// rights, so that every instance and subscriber drops what it cached for them, and
// local validators refuse tokens issued before. It stays in the log as long as a
// key's reduction does: longer than any token issued before it lives. The role
// is changed only once this is logged.
func (s *Keys) roleRightsReduced(ctx context.Context, name string) error {
	return s.logChange(ctx, &logEntry{kind: repository.RevokedKeyRightsReduced, reason: "role changed"}, RoleSubjectPrefix+name, true)
}

// holderPage is how many keys naming a role are read at a time.
const holderPage = 500

// forgetRole removes the role name from every key that names it, so that a role
// created later under the same name grants nothing to keys nobody gave it. A
// revoked key keeps the name: it never verifies again.
func (s *Keys) forgetRole(ctx context.Context, name string) error {
	internal := authz.WithPrincipal(ctx, nil) // the deletion is authorised; the keys are the store's
	var after *repository.KeyCursor
	for {
		keys, err := s.keys.ListKeys(ctx, repository.KeyFilter{Role: name}, holderPage, after)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == repository.KeyRevoked {
				continue
			}
			_, err := s.modify(internal, k.ID, "update", nil, func(k *repository.Key) error { // the role's deletion is logged
				if k.State == repository.KeyRevoked || !slices.Contains(k.Roles, name) {
					return errUnchanged
				}
				k.Roles = nilIfEmpty(slices.DeleteFunc(slices.Clone(k.Roles), func(r string) bool { return r == name }))
				return nil
			})
			if err != nil && !isNotFound(err) {
				return err
			}
			s.history(ctx, k.ID, "role_removed", "role "+quote(name)+" deleted", nil)
		}
		if len(keys) < holderPage {
			return nil
		}
		last := keys[len(keys)-1]
		after = &repository.KeyCursor{CreateTime: last.CreateTime, ID: last.ID}
	}
}

// InvalidateRoles drops every cached verification, after a role changed.
func (s *Keys) InvalidateRoles() { s.cache.clear() }

// FlushUsage writes the last-used times gathered by verifications to the store.
func (s *Keys) FlushUsage(ctx context.Context) error {
	uses := s.cache.takeUses(s.now())
	if len(uses) == 0 {
		return nil
	}
	if err := s.keys.RecordKeyUse(ctx, uses); err != nil {
		s.cache.putBackUses(uses)
		return err
	}
	return nil
}

// RunUsageFlusher writes last-used times every interval until ctx ends, then once more.
func (s *Keys) RunUsageFlusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.FlushUsage(flushCtx); err != nil {
				s.log.Warn("writing key last-used times failed", "error", err)
			}
			cancel()
			return
		case <-t.C:
			if err := s.FlushUsage(ctx); err != nil {
				s.log.Warn("writing key last-used times failed", "error", err)
			}
		}
	}
}

func canonicalCIDRs(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(in))
	for _, c := range in {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Masked() != p {
			return nil, errs.InvalidArgument("allowed_cidrs", "%q is not a network in CIDR form (like 10.0.0.0/8 or 2001:db8::/32)", c)
		}
		out = append(out, p.String())
	}
	return out, nil
}

// checkQuota refuses a quota the stores cannot count: uses are counted in signed
// 64-bit integers on every engine.
func checkQuota(q *repository.Quota) error {
	if q != nil && q.Limit > math.MaxInt64 {
		return errs.InvalidArgument("quota.limit", "must be at most %d", uint64(math.MaxInt64))
	}
	return nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func encodeKeyCursor(c repository.KeyCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("k1." + strconv.FormatInt(c.CreateTime.UnixMilli(), 10) + "." + c.ID))
}

func decodeKeyCursor(tok string) (*repository.KeyCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 || parts[0] != "k1" || !apikey.ValidID(parts[2]) {
		return nil, errors.New("bad cursor")
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, err
	}
	return &repository.KeyCursor{CreateTime: time.UnixMilli(ms).UTC(), ID: parts[2]}, nil
}

// Bootstrap creates the first admin key when the store holds no key at all, and
// returns it with its secret; on a store that has keys it returns nil.
func (s *Keys) Bootstrap(ctx context.Context) (*repository.Key, string, error) {
	n, err := s.keys.CountKeys(ctx, repository.KeyFilter{})
	if err != nil || n > 0 {
		return nil, "", err
	}
	return s.Create(ctx, KeyInput{
		Name:        "bootstrap admin",
		Owner:       "keyward",
		Environment: repository.EnvironmentLive,
		Permissions: []string{"*"},
		Metadata:    map[string]string{"created_by": "bootstrap"},
	})
}
