package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/repository"
)

// auditRepo implements repository.AuditRepository. Request events live in
// audit_events, with each row's size and kind (authenticated or not) kept in
// columns so TrimAuditEvents can bound each kind by bytes, oldest first (SQLite has
// no capped tables). Key history lives in key_events and is never trimmed.
//
// The size of each kind is kept in memory (one process owns the data dir), so a
// trim of a log within its bounds costs nothing and one over them reads only the
// rows it deletes; summing a large log holds the writer for seconds.
type auditRepo struct {
	s *Store

	mu    sync.Mutex // serialises inserts and trims, and guards bytes and known
	bytes [2]int64   // sum of the stored events' sizes, by kind (authenticatedKind)
	known bool       // false: bytes must be summed again, at the next trim
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

// auditDoc holds the fields of an event that are never filtered on.
type auditDoc struct {
	RequestID    string            `json:"request_id,omitempty"`
	HTTPMethod   string            `json:"http_method,omitempty"`
	HTTPRoute    string            `json:"http_route,omitempty"`
	TokenID      string            `json:"token_id,omitempty"`
	UserAgent    string            `json:"user_agent,omitempty"`
	Headers      map[string]string `json:"headers,omitempty"`
	HTTPStatus   int32             `json:"http_status,omitempty"`
	DenialReason string            `json:"denial_reason,omitempty"`
	LatencyNS    int64             `json:"latency_ns,omitempty"`
	Throttled    bool              `json:"throttled,omitempty"`
	Count        int64             `json:"count,omitempty"`
	EndMS        int64             `json:"end_ms,omitempty"`
}

const auditColumns = "id, time_ms, method, caller_key_id, subject, client_ip, code, authenticated, doc"

func (a *auditRepo) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) (err error) {
	if len(events) == 0 {
		return nil
	}
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
	var added [2]int64
	exact := true // false when an event was stored already (a retried batch)
	// Many rows per INSERT: one statement step per chunk instead of per event
	// (the audit writer is on every request's path, in the background).
	args := make([]any, 0, auditChunk*auditParams)
	for start := 0; start < len(events); start += auditChunk {
		chunk := events[start:min(start+auditChunk, len(events))]
		args = args[:0]
		var chunkBytes [2]int64
		for _, e := range chunk {
			d := auditDoc{
				RequestID: e.RequestID, HTTPMethod: e.HTTPMethod, HTTPRoute: e.HTTPRoute, TokenID: e.TokenID,
				UserAgent: e.UserAgent, Headers: e.Headers, HTTPStatus: e.HTTPStatus, DenialReason: e.DenialReason,
				LatencyNS: int64(e.Latency), Throttled: e.Throttled, Count: e.Count,
			}
			if !e.EndTime.IsZero() {
				d.EndMS = e.EndTime.UnixMilli()
			}
			doc, err := json.Marshal(d)
			if err != nil {
				return a.s.wrap("encode audit event", err)
			}
			kind := authenticatedKind(e)
			size := len(doc) + len(e.ID) + len(e.Method) + len(e.CallerKeyID) + len(e.Subject) + len(e.ClientIP) + len(e.Code) + 9
			args = append(args, e.ID, e.Time.UnixMilli(), e.Method, e.CallerKeyID, e.Subject, e.ClientIP, e.Code, kind, string(doc), size)
			chunkBytes[kind] += int64(size)
		}
		res, err := tx.ExecContext(ctx, insertAuditSQL(len(chunk)), args...)
		if err != nil {
			return a.s.wrap("insert audit events", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(chunk)) {
			exact = false
		}
		added[0] += chunkBytes[0]
		added[1] += chunkBytes[1]
	}
	if err := tx.Commit(); err != nil {
		return a.s.wrap("insert audit events", err)
	}
	if !exact {
		a.known = false
	}
	a.bytes[0] += added[0]
	a.bytes[1] += added[1]
	return nil
}

func scanAuditEvent(row rowScanner) (*repository.AuditEvent, error) {
	var (
		e    repository.AuditEvent
		ms   int64
		raw  string
		d    auditDoc
		kind int
	)
	if err := row.Scan(&e.ID, &ms, &e.Method, &e.CallerKeyID, &e.Subject, &e.ClientIP, &e.Code, &kind, &raw); err != nil {
		return nil, err
	}
	e.Authenticated = kind == 1
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return nil, err
	}
	e.Time = time.UnixMilli(ms).UTC()
	e.RequestID, e.HTTPMethod, e.HTTPRoute, e.TokenID = d.RequestID, d.HTTPMethod, d.HTTPRoute, d.TokenID
	e.UserAgent, e.HTTPStatus, e.DenialReason, e.Latency = d.UserAgent, d.HTTPStatus, d.DenialReason, time.Duration(d.LatencyNS)
	e.Throttled, e.Count = d.Throttled, d.Count
	if d.EndMS != 0 {
		e.EndTime = time.UnixMilli(d.EndMS).UTC()
	}
	if len(d.Headers) > 0 {
		e.Headers = d.Headers
	}
	return &e, nil
}

func (a *auditRepo) ListAuditEvents(ctx context.Context, f repository.AuditFilter, limit int, beforeID string) ([]*repository.AuditEvent, error) {
	if limit < 1 {
		return nil, nil
	}
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	for col, v := range map[string]string{"caller_key_id": f.CallerKeyID, "method": f.Method, "code": f.Code, "client_ip": f.ClientIP, "subject": f.Subject} {
		if v != "" {
			add(col+" = ?", v)
		}
	}
	if !f.Start.IsZero() {
		add("time_ms >= ?", f.Start.UnixMilli())
	}
	if !f.End.IsZero() {
		add("time_ms < ?", f.End.UnixMilli())
	}
	if beforeID != "" {
		add("id < ?", beforeID)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := a.s.r.QueryContext(ctx, q+" ORDER BY id DESC LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, a.s.wrap("list audit events", err)
	}
	defer rows.Close()
	var out []*repository.AuditEvent
	for rows.Next() {
		e, err := scanAuditEvent(rows)
		if err != nil {
			return nil, a.s.wrap("list audit events", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, a.s.wrap("list audit events", err)
	}
	return out, nil
}

// TrimAuditEvents keeps, of each kind, the newest events whose sizes add up to at
// most its bound.
func (a *auditRepo) TrimAuditEvents(ctx context.Context, bounds repository.AuditBounds) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.known {
		if err := a.sum(ctx); err != nil {
			return 0, a.s.wrap("trim audit events", err)
		}
	}
	var deleted int64
	for kind, maxBytes := range [2]int64{bounds.Unauthenticated, bounds.Authenticated} {
		n, err := a.trim(ctx, kind, maxBytes)
		deleted += n
		if err != nil {
			a.known = false
			return deleted, a.s.wrap("trim audit events", err)
		}
	}
	return deleted, nil
}

// sum reads the stored size of each kind. Caller holds mu.
func (a *auditRepo) sum(ctx context.Context) error {
	rows, err := a.s.w.QueryContext(ctx, "SELECT authenticated, coalesce(sum(size), 0) FROM audit_events GROUP BY authenticated")
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

// trim deletes the oldest events of one kind until it takes at most maxBytes.
// Caller holds mu.
func (a *auditRepo) trim(ctx context.Context, kind int, maxBytes int64) (int64, error) {
	var deleted int64
	for a.bytes[kind] > maxBytes {
		// The oldest events, a page at a time, until enough bytes are found.
		rows, err := a.s.w.QueryContext(ctx, "SELECT id, size FROM audit_events WHERE authenticated = ? ORDER BY id LIMIT 1000", kind)
		if err != nil {
			return deleted, err
		}
		var last string
		var freed int64
		for rows.Next() && a.bytes[kind]-freed > maxBytes {
			var size int64
			if err := rows.Scan(&last, &size); err != nil {
				rows.Close()
				return deleted, err
			}
			freed += size
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return deleted, err
		}
		if last == "" { // none of this kind is stored: the total was off
			a.bytes[kind] = 0
			break
		}
		res, err := a.s.w.ExecContext(ctx, "DELETE FROM audit_events WHERE authenticated = ? AND id <= ?", kind, last)
		if err != nil {
			return deleted, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return deleted, err
		}
		deleted += n
		a.bytes[kind] -= freed
	}
	return deleted, nil
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

const (
	auditParams = 10  // columns bound per event
	auditChunk  = 256 // events per INSERT, well under SQLite's 32,766 bound parameters
)

// insertAuditSQLs caches the INSERT statement text per number of rows.
var insertAuditSQLs sync.Map

// insertAuditSQL returns the statement inserting n events; an event whose id is
// stored already is skipped, so retrying a partly stored batch is harmless.
func insertAuditSQL(n int) string {
	if q, ok := insertAuditSQLs.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO audit_events (" + auditColumns + ", size) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	q, _ := insertAuditSQLs.LoadOrStore(n, b.String())
	return q.(string)
}
