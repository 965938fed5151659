// Package demoapi is the HTTP service `gatehouse dev` puts behind its HTTP proxy as the
// resource demo-api: a small customers and refunds API on a loopback port, which answers
// only requests carrying the gateway's credential.
package demoapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is the demo service.
type Server struct {
	URL    string
	srv    *http.Server
	token  string
	mu     sync.Mutex
	refund []map[string]any
}

var customers = []map[string]any{
	{"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "card_number": "4111 1111 1111 1111", "city": "London"},
	{"id": 2, "name": "Grace Hopper", "email": "grace@example.com", "card_number": "5500 0000 0000 0004", "city": "Arlington"},
	{"id": 3, "name": "Alan Turing", "email": "alan@example.com", "card_number": "3400 0000 0000 009", "city": "Wilmslow"},
}

// Start serves the demo API on a free loopback port; token is the bearer credential it
// requires (the gateway's, never a caller's).
func Start(token string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /customers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"customers": customers, "total": len(customers)})
	})
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, c := range customers {
			if r.PathValue("id") == jsonString(c["id"]) {
				writeJSON(w, 200, c)
				return
			}
		}
		writeJSON(w, 404, map[string]any{"error": "no such customer"})
	})
	mux.HandleFunc("DELETE /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"deleted": r.PathValue("id")})
	})
	mux.HandleFunc("POST /refunds", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
			writeJSON(w, 400, map[string]any{"error": "a JSON body is expected"})
			return
		}
		s.mu.Lock()
		body["id"] = len(s.refund) + 1
		s.refund = append(s.refund, body)
		s.mu.Unlock()
		writeJSON(w, 201, body)
	})
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			writeJSON(w, 401, map[string]any{"error": "this service answers only the gateway"})
			return
		}
		mux.ServeHTTP(w, r)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Stop stops it.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = s.srv.Close()
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
