package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/repository"
)

// The audit log of schema versions 4 and 5 held a row per event in audit_events,
// with the fields never filtered on in a JSON document. Migration 6 moves those
// events into segments (convertAuditEvents) and drops the table.

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

// scanLegacyAuditEvent reads a row of audit_events; a document that cannot be
// read leaves its fields empty.
func scanLegacyAuditEvent(row rowScanner) (*repository.AuditEvent, error) {
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
	if json.Unmarshal([]byte(raw), &d) != nil {
		d = auditDoc{}
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

// legacyAuditColumns are the columns of audit_events, in scanAuditEvent's order.
const legacyAuditColumns = "id, time_ms, method, caller_key_id, subject, client_ip, code, authenticated, doc"

// convertAuditEvents moves every event of audit_events into segments, newest
// first, maxSegmentEvents at a time, and drops the table. An event whose document
// cannot be read is kept with its filtered fields (the document holds no field a
// listing selects by), not allowed to stop the upgrade.
func convertAuditEvents(ctx context.Context, tx *sql.Tx) error {
	for kind := range 2 {
		before := "\xff"
		for {
			rows, err := tx.QueryContext(ctx, "SELECT "+legacyAuditColumns+" FROM audit_events WHERE authenticated = ? AND id < ? ORDER BY id DESC LIMIT ?",
				kind, before, maxSegmentEvents)
			if err != nil {
				return fmt.Errorf("reading audit events: %w", err)
			}
			b := newSegmentBuilder()
			b.exactOnly = true // the schema has no filters yet
			for rows.Next() {
				e, err := scanLegacyAuditEvent(rows)
				if err != nil {
					rows.Close()
					return fmt.Errorf("reading audit events: %w", err)
				}
				b.add(e)
				before = e.ID
			}
			if err := rows.Close(); err != nil {
				return fmt.Errorf("reading audit events: %w", err)
			}
			if b.n == 0 {
				break
			}
			if err := insertSegment(ctx, tx, kind, b); err != nil {
				return fmt.Errorf("writing audit segments: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE audit_events"); err != nil {
		return fmt.Errorf("dropping audit_events: %w", err)
	}
	return nil
}
