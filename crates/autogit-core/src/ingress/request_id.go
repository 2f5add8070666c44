// Package requestid is autogit's request-id middleware for Traefik (a local plugin, run by
// Traefik's Yaegi interpreter; rendered by autogit, see docs/ingress.md "Request ids").
//
// Every request leaves it with exactly one X-Request-Id: the client's when it is valid (1 to
// 128 characters of A-Z a-z 0-9 - _ . :), else 32 random hex digits. The backend gets it, the
// client gets it back, and Traefik's access log records it (request_X-Request-Id).
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Config has no settings.
type Config struct{}

// CreateConfig is the empty configuration.
func CreateConfig() *Config { return &Config{} }

type requestID struct{ next http.Handler }

// New returns the middleware.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return &requestID{next: next}, nil
}

func valid(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

func (m *requestID) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	id := req.Header.Get("X-Request-Id")
	if !valid(id) {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			http.Error(w, "no randomness for a request id", http.StatusInternalServerError)
			return
		}
		id = hex.EncodeToString(b)
	}
	req.Header.Set("X-Request-Id", id)
	w.Header().Set("X-Request-Id", id)
	m.next.ServeHTTP(w, req)
}
