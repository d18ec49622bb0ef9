package embedded

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/repository"
)

// auditRepo implements repository.AuditRepository. Request events live in
// audit_segments, one row per kind (authenticated or not) per written batch (see
// auditsegment.go), with audit_terms indexing the segments by the values of the
// filtered fields, and audit_filters holding the Bloom filters of the fields a
// segment has too many values of to index (auditfilter.go). Each kind is bounded by bytes, oldest events first (SQLite has no
// capped tables): a trim deletes the segments it empties and records in the one it
// cuts (floor_id) below which its events are gone. Key history lives in key_events
// and is never trimmed.
//
// The size of each kind is kept in memory (one process owns the data dir), so a
// trim of a log within its bounds costs nothing.
type auditRepo struct {
	s *Store

	mu    sync.Mutex // serialises inserts and trims, and guards bytes, known and builders
	bytes [2]int64   // sum of the stored events' sizes, by kind (authenticatedKind)
	known bool       // false: bytes must be summed again, at the next trim
	// builders encode each batch's segments, by kind, reset between segments.
	builders [2]*segmentBuilder
}

// authenticatedKind is the value of the authenticated column, and the index of
// auditRepo.bytes, for an event.
func authenticatedKind(e *repository.AuditEvent) int {
	if e.Authenticated {
		return 1
	}
	return 0
}

var _ repository.AuditRepository = (*auditRepo)(nil)

// InsertAuditEvents stores a batch, skipping the events stored already (a retried
// batch) and, of an id repeated within the batch, all but the first.
func (a *auditRepo) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) (err error) {
	if len(events) == 0 {
		return nil
	}
	sorted := newestFirst(events)

	a.mu.Lock()
	defer a.mu.Unlock()
	tx, err := a.s.w.BeginTx(ctx, nil)
	if err != nil {
		return a.s.wrap("insert audit events", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stored, err := storedAuditIDs(ctx, tx, sorted[len(sorted)-1].ID, sorted[0].ID)
	if err != nil {
		return a.s.wrap("insert audit events", err)
	}
	var added [2]int64
	for kind, b := range a.builders {
		if b == nil {
			a.builders[kind] = newSegmentBuilder()
		}
	}
	defer func() {
		for _, b := range a.builders {
			b.reset()
		}
	}()
	for _, e := range sorted {
		if _, ok := stored[e.ID]; ok {
			continue
		}
		kind := authenticatedKind(e)
		b := a.builders[kind]
		b.add(e)
		if b.n == maxSegmentEvents {
			if err := insertSegment(ctx, tx, kind, b); err != nil {
				return a.s.wrap("insert audit events", err)
			}
			added[kind] += b.size
			b.reset()
		}
	}
	for kind, b := range a.builders {
		if b.n == 0 {
			continue
		}
		if err := insertSegment(ctx, tx, kind, b); err != nil {
			return a.s.wrap("insert audit events", err)
		}
		added[kind] += b.size
	}
	if err := tx.Commit(); err != nil {
		return a.s.wrap("insert audit events", err)
	}
	a.bytes[0] += added[0]
	a.bytes[1] += added[1]
	return nil
}

// newestFirst returns the events by id, newest first, the first of a repeated id
// only. Events mostly reach the writer in the order of their ids: then a reversed
// copy.
func newestFirst(events []*repository.AuditEvent) []*repository.AuditEvent {
	out := slices.Clone(events)
	ascending := true
	for i := 1; i < len(out) && ascending; i++ {
		ascending = out[i-1].ID < out[i].ID
	}
	if ascending {
		slices.Reverse(out)
		return out
	}
	slices.SortStableFunc(out, func(x, y *repository.AuditEvent) int { return cmp.Compare(y.ID, x.ID) })
	return slices.CompactFunc(out, func(x, y *repository.AuditEvent) bool { return x.ID == y.ID })
}

// storedAuditIDs returns the ids in [lo, hi] stored in the segments whose ids
// overlap it: usually none, or the last segment written when events of two batches
// interleave, or the batch itself when it is retried.
func storedAuditIDs(ctx context.Context, tx *sql.Tx, lo, hi string) (map[string]struct{}, error) {
	rows, err := tx.QueryContext(ctx, "SELECT floor_id, data FROM audit_segments WHERE max_id >= ? AND min_id <= ?", lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out map[string]struct{}
	for rows.Next() {
		var floor string
		var data sql.RawBytes
		if err := rows.Scan(&floor, &data); err != nil {
			return nil, err
		}
		r, err := readSegment(data)
		if err != nil {
			continue // damaged: none of its events can be told apart (see readSegmentInto)
		}
		if out == nil {
			out = map[string]struct{}{}
		}
		var e segmentEvent
		for r.next(&e) && compareID(e.id, floor) > 0 && compareID(e.id, lo) >= 0 {
			if compareID(e.id, hi) <= 0 {
				out[string(e.id)] = struct{}{}
			}
		}
	}
	return out, rows.Err()
}

// insertSegment stores a segment and its terms.
func insertSegment(ctx context.Context, tx *sql.Tx, kind int, b *segmentBuilder) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO audit_segments (authenticated, min_id, max_id, floor_id, min_ms, max_ms, events, size, data)
		VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)`, kind, b.minID, b.maxID, b.minMS, b.maxMS, b.n, b.size, b.blob())
	if err != nil {
		return err
	}
	seg, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if filters, fields := b.filters(); filters != nil {
		if _, err := tx.ExecContext(ctx, "INSERT INTO audit_filters (seg, fields, filters) VALUES (?, ?, ?)", seg, fields, filters); err != nil {
			return err
		}
	}
	terms := b.terms()
	args := make([]any, 0, 2*min(len(terms), termsChunk))
	for start := 0; start < len(terms); start += termsChunk {
		chunk := terms[start:min(start+termsChunk, len(terms))]
		args = args[:0]
		for _, t := range chunk {
			args = append(args, t, seg)
		}
		if _, err := tx.ExecContext(ctx, insertTermsSQL(len(chunk)), args...); err != nil {
			return err
		}
	}
	return nil
}

// ListAuditEvents returns the newest events matching f older than beforeID.
// Segments are read newest first (by their newest id), listSegmentsPage at a time;
// reading stops once limit events newer than the next segment's newest are found.
func (a *auditRepo) ListAuditEvents(ctx context.Context, f repository.AuditFilter, limit int, beforeID string) ([]*repository.AuditEvent, error) {
	if limit < 1 {
		return nil, nil
	}
	l := auditListing{f: f, limit: limit, before: beforeID}
	l.want = [segmentFields]string{fieldMethod: f.Method, fieldCaller: f.CallerKeyID, fieldSubject: f.Subject, fieldClientIP: f.ClientIP, fieldCode: f.Code}
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	for field, v := range l.want {
		if v != "" {
			conds = append(conds, "(seg IN (SELECT seg FROM audit_terms WHERE term = ?) OR seg IN (SELECT seg FROM audit_filters WHERE fields & ? != 0 AND audit_may_hold(filters, ?, ?)))")
			args = append(args, term(field, v), 1<<field, field, v)
		}
	}
	if !f.Start.IsZero() {
		l.startMS = f.Start.UnixMilli()
		add("max_ms >= ?", l.startMS)
	}
	if !f.End.IsZero() {
		l.endMS = f.End.UnixMilli()
		add("min_ms < ?", l.endMS)
	}
	if beforeID != "" {
		add("min_id < ?", beforeID)
	}
	for below := ""; ; {
		q := "SELECT seg, max_id FROM audit_segments WHERE " + strings.Join(append(conds, "max_id < ?"), " AND ")
		if below == "" {
			below = "\xff" // above every id
		}
		metas, err := a.segmentsBelow(ctx, q+" ORDER BY max_id DESC LIMIT ?", append(args, below, listSegmentsPage)...)
		if err != nil {
			return nil, a.s.wrap("list audit events", err)
		}
		for _, m := range metas {
			if len(l.out) == limit && l.out[limit-1].ID > m.maxID {
				return l.out, nil // every event left is older than the ones found
			}
			if err := a.readSegmentInto(ctx, &l, m); err != nil {
				return nil, a.s.wrap("list audit events", err)
			}
		}
		if len(metas) < listSegmentsPage {
			return l.out, nil
		}
		below = metas[len(metas)-1].maxID
	}
}

// listSegmentsPage is how many segments a listing selects at a time.
const listSegmentsPage = 16

type segmentMeta struct {
	seg   int64
	maxID string
}

func (a *auditRepo) segmentsBelow(ctx context.Context, q string, args ...any) ([]segmentMeta, error) {
	rows, err := a.s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []segmentMeta
	for rows.Next() {
		var m segmentMeta
		if err := rows.Scan(&m.seg, &m.maxID); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// auditListing is a listing under way.
type auditListing struct {
	f              repository.AuditFilter
	want           [segmentFields]string
	startMS, endMS int64
	limit          int
	before         string
	out            []*repository.AuditEvent // newest first, at most limit
}

// readSegmentInto adds the events of a segment that l selects. A segment trimmed
// away since it was selected has none, whether its seg is free or taken again by a
// newer one (its newest id tells). Of a damaged segment (a disk's fault) the events
// before the damage are read and the rest skipped, so that one bad blob cannot
// stop every listing reaching it; trims delete it in its turn.
func (a *auditRepo) readSegmentInto(ctx context.Context, l *auditListing, m segmentMeta) error {
	var (
		maxID, floor string
		kind         int
		data         []byte
	)
	err := a.s.getAuditSegment.QueryRowContext(ctx, m.seg).Scan(&maxID, &floor, &kind, &data)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && maxID != m.maxID) {
		return nil
	}
	if err != nil {
		return err
	}
	r, err := readSegment(data)
	if err != nil {
		return nil
	}
	var idx [segmentFields]uint64
	for field, v := range l.want {
		if v != "" {
			var ok bool
			if idx[field], ok = r.lookup(field, v); !ok {
				return nil // the value was in events trimmed since
			}
		}
	}
	sorted := len(l.out) == 0 || l.out[len(l.out)-1].ID > m.maxID
	found := 0
	var e segmentEvent
events:
	for found < l.limit && r.next(&e) {
		if l.before != "" && compareID(e.id, l.before) >= 0 {
			continue
		}
		if compareID(e.id, floor) <= 0 {
			break // trimmed, like every older event of the segment
		}
		for field, v := range l.want {
			if v != "" && e.fields[field] != idx[field] {
				continue events
			}
		}
		if (!l.f.Start.IsZero() && e.ms < l.startMS) || (!l.f.End.IsZero() && e.ms >= l.endMS) {
			continue
		}
		ev, err := r.event(&e, kind == 1)
		if err != nil {
			break
		}
		l.out = append(l.out, ev)
		found++
	}
	if !sorted {
		slices.SortFunc(l.out, func(x, y *repository.AuditEvent) int { return cmp.Compare(y.ID, x.ID) })
	}
	l.out = l.out[:min(len(l.out), l.limit)]
	return nil
}

// TrimAuditEvents keeps, of each kind, the newest events whose sizes add up to at
// most its bound.
func (a *auditRepo) TrimAuditEvents(ctx context.Context, bounds repository.AuditBounds) (deleted int64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.known {
		if err := a.sum(ctx); err != nil {
			return 0, a.s.wrap("trim audit events", err)
		}
	}
	limits := [2]int64{bounds.Unauthenticated, bounds.Authenticated}
	if a.bytes[0] <= limits[0] && a.bytes[1] <= limits[1] {
		return 0, nil
	}
	tx, err := a.s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, a.s.wrap("trim audit events", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			a.known = false
			deleted = 0
		}
	}()
	var freed [2]int64
	for kind, maxBytes := range limits {
		if a.bytes[kind] <= maxBytes {
			continue
		}
		n, bytes, err := trimKind(ctx, tx, kind, a.bytes[kind]-maxBytes)
		if err != nil {
			return 0, a.s.wrap("trim audit events", err)
		}
		deleted += n
		freed[kind] = bytes
	}
	if err := tx.Commit(); err != nil {
		return 0, a.s.wrap("trim audit events", err)
	}
	for kind := range freed {
		a.bytes[kind] -= freed[kind]
		if a.bytes[kind] < 0 { // the total was off: nothing of the kind is left
			a.bytes[kind] = 0
		}
	}
	return deleted, nil
}

// sum reads the stored size of each kind. Caller holds mu.
func (a *auditRepo) sum(ctx context.Context) error {
	rows, err := a.s.w.QueryContext(ctx, "SELECT authenticated, coalesce(sum(size), 0) FROM audit_segments GROUP BY authenticated")
	if err != nil {
		return err
	}
	defer rows.Close()
	a.bytes = [2]int64{}
	for rows.Next() {
		var kind int
		var bytes int64
		if err := rows.Scan(&kind, &bytes); err != nil {
			return err
		}
		a.bytes[kind&1] = bytes
	}
	if err := rows.Err(); err != nil {
		return err
	}
	a.known = true
	return nil
}

// trimCursor walks the events of one segment that a trim reads, oldest first.
type trimCursor struct {
	seg     int64
	maxID   string
	terms   []string
	events  []trimmedEvent // oldest first
	next    int            // events[next:] are not deleted
	freed   int64
	damaged bool // unreadable: its terms are not known
}

type trimmedEvent struct {
	id    string
	size  int64
	count int64 // events it stands for: 1, or those of a damaged segment
}

// trimKind deletes the oldest events of one kind until need bytes are freed (or
// none is left), in event id order across segments whose ids overlap: the
// segments are read in the order of their oldest id, and an event is deleted only
// once no unread segment can hold an older one. It returns the events deleted and
// the bytes they took.
func trimKind(ctx context.Context, tx *sql.Tx, kind int, need int64) (deleted, freed int64, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT s.seg, s.min_id, s.max_id, s.floor_id, s.events, s.size, s.data, f.filters
		FROM audit_segments s LEFT JOIN audit_filters f ON f.seg = s.seg WHERE s.authenticated = ? ORDER BY s.min_id, s.seg`, kind)
	if err != nil {
		return 0, 0, err
	}
	var open []*trimCursor
	var pending *trimCursor // read, not yet merged
	var pendingMin string
	read := func() error {
		pending = nil
		if !rows.Next() {
			return rows.Err()
		}
		var (
			c            trimCursor
			floor        string
			events, size int64
			data         sql.RawBytes
			filters      sql.RawBytes
		)
		if err := rows.Scan(&c.seg, &pendingMin, &c.maxID, &floor, &events, &size, &data, &filters); err != nil {
			return err
		}
		pending = &c
		r, err := readSegment(data)
		filtered, ok := filteredFields(filters)
		if !ok {
			err = errCorruptSegment
		}
		if err == nil {
			var e segmentEvent
			for r.next(&e) && compareID(e.id, floor) > 0 {
				c.events = append(c.events, trimmedEvent{id: string(e.id), size: e.size, count: 1})
			}
			err = r.err
		}
		if err != nil {
			// Damaged (a disk's fault): it goes whole, as the oldest of its ids,
			// its terms by seg.
			c.events, c.damaged = []trimmedEvent{{id: c.maxID, size: size, count: events}}, true
			return nil
		}
		for f, d := range r.dicts[:segmentFields] {
			if filtered&(1<<f) != 0 {
				continue // not in audit_terms
			}
			for _, v := range d {
				c.terms = append(c.terms, term(f, string(v)))
			}
		}
		slices.Reverse(c.events)
		return nil
	}
	var cut string
	err = read()
	for err == nil && freed < need {
		// The oldest undeleted event of the segments read.
		var oldest *trimCursor
		for _, c := range open {
			if c.next < len(c.events) && (oldest == nil || c.events[c.next].id < oldest.events[oldest.next].id) {
				oldest = c
			}
		}
		if pending != nil && (oldest == nil || oldest.events[oldest.next].id >= pendingMin) {
			open = append(open, pending)
			err = read()
			continue
		}
		if oldest == nil {
			break // nothing of the kind is left
		}
		e := oldest.events[oldest.next]
		oldest.next++
		oldest.freed += e.size
		freed += e.size
		deleted += e.count
		cut = e.id
	}
	err = errors.Join(err, rows.Close())
	if err != nil || deleted == 0 {
		return 0, 0, err
	}
	for _, c := range open {
		switch {
		case c.next == len(c.events):
			err = deleteSegment(ctx, tx, c)
		case c.next > 0:
			_, err = tx.ExecContext(ctx, "UPDATE audit_segments SET floor_id = ?, size = size - ? WHERE seg = ?", cut, c.freed, c.seg)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return deleted, freed, nil
}

// deleteSegment deletes a segment, its filters and its terms.
func deleteSegment(ctx context.Context, tx *sql.Tx, c *trimCursor) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM audit_segments WHERE seg = ?", c.seg); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM audit_filters WHERE seg = ?", c.seg); err != nil {
		return err
	}
	if c.damaged {
		_, err := tx.ExecContext(ctx, "DELETE FROM audit_terms WHERE seg = ?", c.seg) // a scan: rare
		return err
	}
	args := make([]any, 0, 1+min(len(c.terms), termsChunk))
	for start := 0; start < len(c.terms); start += termsChunk {
		chunk := c.terms[start:min(start+termsChunk, len(c.terms))]
		args = append(args[:0], c.seg)
		for _, t := range chunk {
			args = append(args, t)
		}
		q := "DELETE FROM audit_terms WHERE seg = ? AND term IN (?" + strings.Repeat(", ?", len(chunk)-1) + ")" //nolint:gosec // placeholders only
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

type keyEventDoc struct {
	ActorKeyID    string   `json:"actor_key_id,omitempty"`
	ActorIP       string   `json:"actor_ip,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	ChangedFields []string `json:"changed_fields,omitempty"`
}

func (a *auditRepo) AppendKeyEvent(ctx context.Context, e *repository.KeyEvent) error {
	doc, err := json.Marshal(keyEventDoc{ActorKeyID: e.ActorKeyID, ActorIP: e.ActorIP, Reason: e.Reason, ChangedFields: e.ChangedFields})
	if err != nil {
		return a.s.wrap("encode key event", err)
	}
	_, err = a.s.w.ExecContext(ctx, `INSERT INTO key_events (id, key_id, action, time_ms, doc) VALUES (?, ?, ?, ?, ?)`,
		e.ID, e.KeyID, e.Action, e.Time.UnixMilli(), string(doc))
	if isUniqueViolation(err) {
		return repository.ErrAlreadyExists
	}
	if err != nil {
		return a.s.wrap("append key event", err)
	}
	return nil
}

func (a *auditRepo) ListKeyEvents(ctx context.Context, keyID string, limit int, afterID string) ([]*repository.KeyEvent, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, err := a.s.r.QueryContext(ctx,
		`SELECT id, key_id, action, time_ms, doc FROM key_events WHERE key_id = ? AND id > ? ORDER BY id LIMIT ?`, keyID, afterID, limit)
	if err != nil {
		return nil, a.s.wrap("list key events", err)
	}
	defer rows.Close()
	var out []*repository.KeyEvent
	for rows.Next() {
		var (
			e   repository.KeyEvent
			ms  int64
			raw string
			d   keyEventDoc
		)
		if err := rows.Scan(&e.ID, &e.KeyID, &e.Action, &ms, &raw); err != nil {
			return nil, a.s.wrap("list key events", err)
		}
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			return nil, a.s.wrap("list key events", err)
		}
		e.Time = time.UnixMilli(ms).UTC()
		e.ActorKeyID, e.ActorIP, e.Reason, e.ChangedFields = d.ActorKeyID, d.ActorIP, d.Reason, nilIfEmpty(d.ChangedFields)
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, a.s.wrap("list key events", err)
	}
	return out, nil
}

// termsChunk bounds the terms per statement, well under SQLite's 32,766 bound
// parameters.
const termsChunk = 1000

// insertTermsSQLs caches the INSERT statement text per number of terms.
var insertTermsSQLs sync.Map

// insertTermsSQL returns the statement inserting n terms of a segment.
func insertTermsSQL(n int) string {
	if q, ok := insertTermsSQLs.Load(n); ok {
		return q.(string)
	}
	q := "INSERT INTO audit_terms (term, seg) VALUES (?, ?)" + strings.Repeat(", (?, ?)", n-1)
	q2, _ := insertTermsSQLs.LoadOrStore(n, q)
	return q2.(string)
}
