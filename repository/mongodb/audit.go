package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository"
)

// auditEventDoc is a request event as stored in the capped audit_events collection.
// Every field but _id is optional: empty values are absent (the collection is
// bounded by bytes, so absent fields leave room for more events) and read back as
// zero values.
type auditEventDoc struct {
	ID           string     `bson:"_id"`
	Time         *time.Time `bson:"time,omitempty"`
	RequestID    string     `bson:"request_id,omitempty"`
	Method       string     `bson:"method,omitempty"`
	HTTPMethod   string     `bson:"http_method,omitempty"`
	HTTPRoute    string     `bson:"http_route,omitempty"`
	CallerKeyID  string     `bson:"caller_key_id,omitempty"`
	TokenID      string     `bson:"token_id,omitempty"`
	Subject      string     `bson:"subject,omitempty"`
	ClientIP     string     `bson:"client_ip,omitempty"`
	UserAgent    string     `bson:"user_agent,omitempty"`
	Headers      []pair     `bson:"headers,omitempty"`
	Code         string     `bson:"code,omitempty"`
	HTTPStatus   int32      `bson:"http_status,omitempty"`
	DenialReason string     `bson:"denial_reason,omitempty"`
	// Latency is in nanoseconds.
	Latency   int64      `bson:"latency,omitempty"`
	Throttled bool       `bson:"throttled,omitempty"`
	Count     int64      `bson:"count,omitempty"`
	EndTime   *time.Time `bson:"end_time,omitempty"`
}

// keyEventDoc is an event of a key's history as stored in the key_events collection.
type keyEventDoc struct {
	ID            string     `bson:"_id"`
	KeyID         string     `bson:"key_id"`
	Action        string     `bson:"action"`
	Time          *time.Time `bson:"time,omitempty"`
	ActorKeyID    string     `bson:"actor_key_id,omitempty"`
	ActorIP       string     `bson:"actor_ip,omitempty"`
	Reason        string     `bson:"reason,omitempty"`
	ChangedFields []string   `bson:"changed_fields,omitempty"`
}

// Field names of the audit_events and key_events collections used in queries.
const (
	fieldTime        = "time"
	fieldCallerKeyID = "caller_key_id"
	fieldMethod      = "method"
	fieldClientIP    = "client_ip"
	fieldSubject     = "subject"
	fieldCode        = "code"
	fieldKeyID       = "key_id"
)

func toAuditEventDoc(e *repository.AuditEvent) *auditEventDoc {
	return &auditEventDoc{
		ID:           e.ID,
		Time:         timePtr(e.Time),
		RequestID:    e.RequestID,
		Method:       e.Method,
		HTTPMethod:   e.HTTPMethod,
		HTTPRoute:    e.HTTPRoute,
		CallerKeyID:  e.CallerKeyID,
		TokenID:      e.TokenID,
		Subject:      e.Subject,
		ClientIP:     e.ClientIP,
		UserAgent:    e.UserAgent,
		Headers:      toPairs(e.Headers),
		Code:         e.Code,
		HTTPStatus:   e.HTTPStatus,
		DenialReason: e.DenialReason,
		Latency:      int64(e.Latency),
		Throttled:    e.Throttled,
		Count:        e.Count,
		EndTime:      timePtr(e.EndTime),
	}
}

func (d *auditEventDoc) auditEvent() *repository.AuditEvent {
	return &repository.AuditEvent{
		ID:           d.ID,
		Time:         timeVal(d.Time),
		RequestID:    d.RequestID,
		Method:       d.Method,
		HTTPMethod:   d.HTTPMethod,
		HTTPRoute:    d.HTTPRoute,
		CallerKeyID:  d.CallerKeyID,
		TokenID:      d.TokenID,
		Subject:      d.Subject,
		ClientIP:     d.ClientIP,
		UserAgent:    d.UserAgent,
		Headers:      fromPairs(d.Headers),
		Code:         d.Code,
		HTTPStatus:   d.HTTPStatus,
		DenialReason: d.DenialReason,
		Latency:      time.Duration(d.Latency),
		Throttled:    d.Throttled,
		Count:        d.Count,
		EndTime:      timeVal(d.EndTime),
	}
}

func toKeyEventDoc(e *repository.KeyEvent) *keyEventDoc {
	return &keyEventDoc{
		ID:            e.ID,
		KeyID:         e.KeyID,
		Action:        e.Action,
		Time:          timePtr(e.Time),
		ActorKeyID:    e.ActorKeyID,
		ActorIP:       e.ActorIP,
		Reason:        e.Reason,
		ChangedFields: e.ChangedFields,
	}
}

func (d *keyEventDoc) keyEvent() *repository.KeyEvent {
	return &repository.KeyEvent{
		ID:            d.ID,
		KeyID:         d.KeyID,
		Action:        d.Action,
		Time:          timeVal(d.Time),
		ActorKeyID:    d.ActorKeyID,
		ActorIP:       d.ActorIP,
		Reason:        d.Reason,
		ChangedFields: nilIfEmpty(d.ChangedFields),
	}
}

// auditRepo implements repository.AuditRepository on two capped collections of
// request events, audit_events for authenticated calls and
// audit_events_unauthenticated for the others, each bounded by its own size, and
// the key_events collection (key history). The kind of an event is the collection
// it is in.
type auditRepo struct {
	events          *mongo.Collection
	unauthenticated *mongo.Collection
	keyEvents       *mongo.Collection
}

// eventsOf is the collection of an event's kind.
func (r *auditRepo) eventsOf(e *repository.AuditEvent) *mongo.Collection {
	if e.Authenticated {
		return r.events
	}
	return r.unauthenticated
}

var _ repository.AuditRepository = (*auditRepo)(nil)

// InsertAuditEvents stores the batch with one unordered insertMany per kind:
// every event is attempted, whatever happens to the others. Events whose _id is
// already stored (a retried batch, partly or wholly stored by an earlier attempt)
// fail with a duplicate key and are skipped: a bulk write error made only of
// duplicate keys is success. Any other write error, or a write concern error, is
// returned.
func (r *auditRepo) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) error {
	byKind := map[*mongo.Collection][]*auditEventDoc{}
	for _, e := range events {
		c := r.eventsOf(e)
		byKind[c] = append(byKind[c], toAuditEventDoc(e))
	}
	var errs []error
	for c, docs := range byKind {
		if err := insertEvents(ctx, c, docs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func insertEvents(ctx context.Context, c *mongo.Collection, docs []*auditEventDoc) error {
	_, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil || onlyDuplicateKeys(err) {
		return nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		rejected := 0
		for _, we := range bwe.WriteErrors {
			if !mongo.IsDuplicateKeyError(we.WriteError) {
				rejected++
			}
		}
		return wrapErr(fmt.Sprintf("insert audit events (%d of %d rejected)", rejected, len(docs)), err)
	}
	return wrapErr("insert audit events", err)
}

// onlyDuplicateKeys reports whether err is a bulk write error whose write errors
// are all duplicate keys, with no write concern error.
func onlyDuplicateKeys(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we.WriteError) {
			return false
		}
	}
	return true
}

// ListAuditEvents finds the events matching f (and with _id below beforeID when
// given), newest first, in both collections: each sorted {_id: -1}, which the _id
// index serves, or one of the {field: 1, _id: -1} indexes when f names that field,
// and the two merged by _id. A limit of 0 or less returns no events.
func (r *auditRepo) ListAuditEvents(ctx context.Context, f repository.AuditFilter, limit int, beforeID string) ([]*repository.AuditEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	filter := auditFilter(f, beforeID)
	opts := options.Find().SetSort(bson.D{{Key: fieldID, Value: -1}}).SetLimit(int64(limit))
	authenticated, err := findAll(ctx, r.events, "list audit events", filter, opts, (*auditEventDoc).auditEvent)
	if err != nil {
		return nil, err
	}
	others, err := findAll(ctx, r.unauthenticated, "list audit events", filter, opts, (*auditEventDoc).auditEvent)
	if err != nil {
		return nil, err
	}
	for _, e := range authenticated {
		e.Authenticated = true
	}
	out := make([]*repository.AuditEvent, 0, min(limit, len(authenticated)+len(others)))
	for len(out) < limit && (len(authenticated) > 0 || len(others) > 0) {
		if len(others) == 0 || (len(authenticated) > 0 && authenticated[0].ID > others[0].ID) {
			out, authenticated = append(out, authenticated[0]), authenticated[1:]
		} else {
			out, others = append(out, others[0]), others[1:]
		}
	}
	return out, nil
}

// auditFilter builds the query document for f and, when given, the page cursor.
func auditFilter(f repository.AuditFilter, beforeID string) bson.D {
	filter := bson.D{}
	for _, c := range []struct{ field, value string }{
		{fieldCallerKeyID, f.CallerKeyID},
		{fieldMethod, f.Method},
		{fieldCode, f.Code},
		{fieldClientIP, f.ClientIP},
		{fieldSubject, f.Subject},
	} {
		if c.value != "" {
			filter = append(filter, bson.E{Key: c.field, Value: c.value})
		}
	}
	var span bson.D
	if !f.Start.IsZero() {
		span = append(span, bson.E{Key: "$gte", Value: f.Start})
	}
	if !f.End.IsZero() {
		span = append(span, bson.E{Key: "$lt", Value: f.End})
	}
	if len(span) > 0 {
		filter = append(filter, bson.E{Key: fieldTime, Value: span})
	}
	if beforeID != "" {
		filter = append(filter, bson.E{Key: fieldID, Value: bson.D{{Key: "$lt", Value: beforeID}}})
	}
	return filter
}

// TrimAuditEvents does nothing and returns 0: both event collections are capped,
// and MongoDB bounds each by itself, deleting its oldest documents (in insertion
// order) as new ones arrive, to the size fixed when Open created it, so one kind
// never makes room for the other. The contract lets an engine that bounds the log
// itself do nothing.
//
// FerretDB v1, the test stand-in, creates the capped collections but does not
// enforce their sizes, so there the log grows without bound; FerretDB is not a
// supported production engine, and this method does not try to tell the two apart.
func (r *auditRepo) TrimAuditEvents(context.Context, repository.AuditBounds) (int64, error) {
	return 0, nil
}

// AppendKeyEvent inserts e; ErrAlreadyExists when the id is taken.
func (r *auditRepo) AppendKeyEvent(ctx context.Context, e *repository.KeyEvent) error {
	return insertNew(ctx, r.keyEvents, "append key event", e.ID, toKeyEventDoc(e))
}

// ListKeyEvents finds the events of one key (with _id above afterID when given),
// oldest first, on the {key_id: 1, _id: 1} index. A limit of 0 or less returns no
// events.
func (r *auditRepo) ListKeyEvents(ctx context.Context, keyID string, limit int, afterID string) ([]*repository.KeyEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	filter := bson.D{{Key: fieldKeyID, Value: keyID}}
	if afterID != "" {
		filter = append(filter, bson.E{Key: fieldID, Value: bson.D{{Key: "$gt", Value: afterID}}})
	}
	return findAll(ctx, r.keyEvents, "list key events", filter,
		options.Find().SetSort(bson.D{{Key: fieldID, Value: 1}}).SetLimit(int64(limit)), (*keyEventDoc).keyEvent)
}
