package keys

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/time/rate"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/permission"
)

// Snapshot is an immutable view of a key with its effective permissions, as the
// key cache holds it, plus the time a secret of it last verified on this instance.
// Other domains read it through its methods only, and must not modify what they
// return: it is shared by every verification of the key. It is one allocation;
// what many keys hold alike (profile, rights) is shared between them.
type Snapshot struct {
	key    Key
	rights *rights
	bucket *rate.Limiter // the key's rate-limit bucket; nil: no rate limit
	// seq is the revocation log position this instance had published when the key
	// was read: every rights change logged up to it is in the snapshot.
	seq    uint64
	filled int64 // unix ns: when the key was read from the store
	// ttlOnly: read within a TTL of a logged change to the key (or to any
	// role), it is trusted for the TTL only (see keyCache).
	ttlOnly  bool
	lastUsed atomic.Int64 // unix ms; 0: not used since loaded
	flushed  atomic.Int64 // the lastUsed value last written to the store
}

// Key is the key as loaded (read-only).
func (e *Snapshot) Key() *Key { return &e.key }

// Effective is the key's effective permissions as stored, direct and through roles
// (read-only).
func (e *Snapshot) Effective() []string { return e.rights.effective }

// Permissions is the key's effective permissions, parsed (read-only).
func (e *Snapshot) Permissions() permission.Set { return e.rights.perms }

// RightsSeq points at the revocation log position this instance had published when
// the key was read: every rights change logged up to it is in the snapshot. The
// snapshot is immutable, so the pointer may be kept (access tokens carry it).
func (e *Snapshot) RightsSeq() *uint64 { return &e.seq }

// Usable reports whether the key may be used at now: found, not revoked and not
// expired. Every admission of the key or of a delegate asks it (Spend refuses
// otherwise).
func (e *Snapshot) Usable(now time.Time) bool {
	return e != nil && !e.key.Revoked() && !e.key.Expired(now)
}

// SecretEnd reports whether the key still accepts the secret a delegate (a
// session, a temporary token) was issued with, named by its fingerprint, and until
// when: never-ending (zero) for its current secret, the end of the grace period for
// the one a rotation replaced. A delegate stored without a fingerprint (by an
// older Keyward, or issued by an access token, whose own checks apply) is taken as
// issued with the current secret unless the key was rotated after issued.
func (e *Snapshot) SecretEnd(fingerprint []byte, issued, now time.Time) (time.Time, bool) {
	k := &e.key
	switch {
	case len(fingerprint) == 0:
		return time.Time{}, !k.rotate.time().After(issued)
	case apikey.MatchesFingerprint(fingerprint, k.secret()):
		return time.Time{}, true
	case apikey.MatchesFingerprint(fingerprint, k.previous()) && now.Before(k.previousExpire.time()):
		return k.previousExpire.time(), true
	}
	return time.Time{}, false
}

// keyCache keeps verified keys in memory so a repeat verification never reads the
// store. Any change to a key on this instance invalidates its entry at once; a
// change to a role drops every entry. A change made by another instance sharing
// the store reaches this one through the revocation log when it can take away
// what a cached verification allows (a revocation, a change of rights, a
// rotation): the follower drops the entry within its poll interval.
//
// Freshness: an entry is trusted for ttl after it was read; after that, for up
// to maxAge, only while the revocation log is known complete here as of less
// than ttl ago (caughtUp). So no change made elsewhere goes unseen for longer
// than ttl, as if every entry expired after ttl, whether the follower works or
// not; while it works, a key is read again only after maxAge (for what the log
// does not carry: its name and metadata), not every ttl.
//
// A change is logged before it is written to the store (Keys.modify), so that
// a change whose log entry cannot be written is not made. The log entry thus
// reaches an instance before the change may be readable: a key read within a
// TTL of a logged change to it (or to any role) gets no more than the TTL, and
// is read again after it, when the write has long landed (a write that lands
// later than a TTL after its entry is logged again).
//
// The index is keyed by the id's bytes, not by a string: a million string keys
// are a million pointers the garbage collector follows on every cycle, and the
// index is the cache's largest object. Ids not of the form every key id has
// (apikey.ValidID's length) are never cached.
//
// Snapshots are allocated slabLen at a time, in slabs (newSlot): the garbage
// collector scans a slab as one object, where a million snapshots allocated
// one by one among a fill's garbage were a million scattered objects to find,
// mark and scan on every cycle. A slot is never used twice, so no reader of a
// snapshot can see another key in its place; a slab is freed once no entry (and
// no call) points into it. Entries filled together expire together, and
// entries no get would return are dropped (sweep, and a few at every put), so a
// slab outlives its entries by little.
//
// Fills race with invalidations: a fill that read the store before an invalidation
// must not install its stale snapshot afterwards. Every invalidation bumps gen, and
// a fill only installs when gen is unchanged since it started reading.
type keyCache struct {
	ttl, maxAge time.Duration
	max         int
	// caughtUp is when the revocation log was last known complete here; nil
	// without a log, when entries live ttl.
	caughtUp func() time.Time
	// changed is when (unix ns) the log last told of a change to a key, by id,
	// and rolesChanged of one to any role: what put needs to mark ttlOnly.
	changed      map[string]int64
	rolesChanged int64

	mu      sync.RWMutex
	entries map[cacheID]*Snapshot
	gen     uint64
	// pending holds use times of entries dropped before their use was written.
	pending map[string]int64

	// rights and profiles are shared by the snapshots of keys granted the same
	// effective permissions, and of keys holding the same profile.
	rights   shared[rights]
	profiles shared[profile]

	// slab is the one new snapshots are allocated from, its slots from next on
	// free.
	slabMu sync.Mutex
	slab   *[slabLen]Snapshot
	next   int
}

// slabLen is the snapshots of a slab: as many as 32 KiB hold, an allocation
// size the Go heap has a class for (one of 128 snapshots took 32 KiB too).
const slabLen = int(32 << 10 / unsafe.Sizeof(Snapshot{}))

// newSlot returns a zero snapshot, in a slot of a slab no other has used.
func (c *keyCache) newSlot() *Snapshot {
	c.slabMu.Lock()
	defer c.slabMu.Unlock()
	if c.slab == nil || c.next == slabLen {
		c.slab, c.next = new([slabLen]Snapshot), 0
	}
	c.next++
	return &c.slab[c.next-1]
}

// cacheID is a key id as the cache's index holds it: its bytes, with no pointer.
type cacheID [apikey.IDLen]byte

// cacheIDOf returns id's index form; ok is false for an id that has not the
// length of a key id, which the cache does not hold.
func cacheIDOf(id string) (_ cacheID, ok bool) {
	if len(id) != apikey.IDLen {
		return cacheID{}, false
	}
	return cacheID([]byte(id)), true
}

// rights is a set of effective permissions as stored and parsed (read-only).
type rights struct {
	effective []string
	perms     permission.Set
}

func newKeyCache(ttl, maxAge time.Duration, caughtUp func() time.Time, maxEntries int) *keyCache {
	return &keyCache{ttl: ttl, maxAge: max(ttl, maxAge), caughtUp: caughtUp, max: maxEntries,
		entries: map[cacheID]*Snapshot{}, pending: map[string]int64{}, changed: map[string]int64{}}
}

// shareRights returns the shared rights whose permissions are effective (deduplicated),
// parsing them with parse when no key holds them yet; found reports whether
// they were already held.
func (c *keyCache) shareRights(effective []string, parse func([]string) permission.Set) (_ *rights, found bool) {
	var n name
	return c.rights.get(n.strs(effective).String(), func() *rights {
		effective = slices.Clip(effective) // an append by a reader must not write into the shared array
		return &rights{effective: effective, perms: slices.Clip(parse(effective))}
	})
}

// shareProfile returns the shared profile of k, made from k (which the caller
// gives up) when no key holds it yet.
func (c *keyCache) shareProfile(k *repository.Key) *profile {
	p, _ := c.profiles.get(profileName(k), func() *profile { return newProfile(k) })
	return p
}

// get returns the live entry for id, or nil.
func (c *keyCache) get(id string, now time.Time) *Snapshot {
	k, ok := cacheIDOf(id)
	if !ok {
		return nil
	}
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e == nil || !c.fresh(e, now, c.caughtUp != nil && now.Sub(c.caughtUp()) < c.ttl) {
		return nil
	}
	return e
}

// fresh reports whether e may be returned at now, caughtUp telling whether the
// revocation log is known complete as of less than a TTL ago.
func (c *keyCache) fresh(e *Snapshot, now time.Time, caughtUp bool) bool {
	age := time.Duration(now.UnixNano() - e.filled)
	return age < c.ttl || (!e.ttlOnly && age < c.maxAge && caughtUp)
}

// sweepAtPut is how many entries a put looks at, dropping those stale.
const sweepAtPut = 2

// sweep drops, of the entries it looks at (at most limit; every one for limit
// < 0), those no get would return at now, or later: they only kept their slabs
// alive. Caller holds mu.
func (c *keyCache) sweep(now time.Time, limit int) {
	for id, e := range c.entries { // map order is random: a few at a time reach them all
		if limit == 0 {
			return
		}
		limit--
		if !c.fresh(e, now, c.caughtUp != nil) { // stale even were the log complete now
			c.keepUse(e)
			delete(c.entries, id)
		}
	}
}

// generation returns the token a fill must present to put.
func (c *keyCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put installs e for id unless an invalidation happened since gen was read.
func (c *keyCache) put(id string, e *Snapshot, gen uint64) {
	k, ok := cacheIDOf(id)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if e.filled-max(c.changed[id], c.rolesChanged) < int64(c.ttl) {
		e.ttlOnly = true // not yet shared: set before any reader can see it
	}
	c.sweep(time.Unix(0, e.filled), sweepAtPut)
	if old := c.entries[k]; old != nil {
		c.keepUse(old)
	} else if len(c.entries) >= c.max {
		for victim, old := range c.entries { // map order is random enough for eviction
			c.keepUse(old)
			delete(c.entries, victim)
			break
		}
	}
	c.entries[k] = e
}

// invalidate drops id's entry.
func (c *keyCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop(id)
}

// drop drops id's entry. Caller holds mu.
func (c *keyCache) drop(id string) {
	c.gen++
	if k, ok := cacheIDOf(id); ok {
		if old := c.entries[k]; old != nil {
			c.keepUse(old)
			delete(c.entries, k)
		}
	}
}

// logged drops id's entry for a change the revocation log told of at now, and
// notes it for put.
func (c *keyCache) logged(id string, now time.Time) {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.changed) >= 4096 { // forget what no fill can be within a TTL of
		for k, at := range c.changed {
			if n-at >= int64(c.ttl) {
				delete(c.changed, k)
			}
		}
	}
	c.changed[id] = n
	c.drop(id)
}

// loggedRoles drops every entry for a change to a role the log told of at now,
// and notes it for put.
func (c *keyCache) loggedRoles(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rolesChanged = now.UnixNano()
	c.dropAll()
}

// clear drops every entry.
func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAll()
}

// dropAll drops every entry. Caller holds mu.
func (c *keyCache) dropAll() {
	c.gen++
	for _, old := range c.entries {
		c.keepUse(old)
	}
	c.entries = map[cacheID]*Snapshot{}
}

// keepUse moves an unwritten use time of a dropped entry to pending. Caller holds mu.
func (c *keyCache) keepUse(e *Snapshot) {
	if u, id := e.lastUsed.Load(), e.key.ID(); u > e.flushed.Load() && u > c.pending[id] {
		c.pending[id] = u
	}
}

// takeUses returns the use times not yet written, and marks them written; it
// sweeps every entry stale at now.
func (c *keyCache) takeUses(now time.Time) map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now, -1)
	out := make(map[string]time.Time, len(c.pending))
	for id, u := range c.pending {
		out[id] = time.UnixMilli(u).UTC()
	}
	c.pending = map[string]int64{}
	for _, e := range c.entries {
		if u := e.lastUsed.Load(); u > e.flushed.Load() {
			e.flushed.Store(u)
			if id, t := e.key.ID(), time.UnixMilli(u).UTC(); t.After(out[id]) {
				out[id] = t
			}
		}
	}
	return out
}

// putBackUses returns use times taken by takeUses that could not be written, so
// that the next takeUses writes them (unless a later use of the key supersedes).
func (c *keyCache) putBackUses(uses map[string]time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range uses {
		if ms := t.UnixMilli(); ms > c.pending[id] {
			c.pending[id] = ms
		}
	}
}
