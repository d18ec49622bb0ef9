// Package audit is the audit log: Log records every request off the request path,
// in batches, gathers throttled refusals per client network, streams events to
// watchers, and keeps each key's permanent history (KeyEvent, KeyHistory).
// Secrets never reach it: headers are sanitised and credentials stand in it as
// keyed HMACs (Correlation).
package audit
