package server

import "net/http"

// Values of the headers securityHeaders sets, shared by every response: assigning a
// shared slice costs no allocation per request (Header.Set makes a new one).
var (
	noSniff = []string{"nosniff"}
	hsts    = []string{"max-age=31536000"}
)

// securityHeaders sets the headers every answer of the REST listener carries:
// X-Content-Type-Options, so that no browser takes a JSON answer (which may echo
// what a client sent) for HTML or script; and with TLS on, Strict-Transport-Security,
// so that a browser that reached Keyward over HTTPS (the admin panel) never falls
// back to plain HTTP for a year. Over plaintext HSTS would mean nothing.
func securityHeaders(next http.Handler, tls bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = noSniff
		if tls {
			h["Strict-Transport-Security"] = hsts
		}
		next.ServeHTTP(w, r)
	})
}
