package armisemu

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault"
	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// Armis timestamps: ISO 8601 with a numeric offset, with microseconds or
// whole seconds.
const (
	timeLayout      = "2006-01-02T15:04:05.000000-07:00"
	wholeTimeLayout = "2006-01-02T15:04:05-07:00"
)

// tokenStore issues access tokens and checks them; mu guards every field.
type tokenStore struct {
	mu     sync.Mutex
	seed   uint64
	ttl    time.Duration
	clock  func() time.Time
	issued uint64
	expiry map[string]time.Time
	// countdown, when positive, is how many more authorized searches are
	// served before every token issued so far expires.
	countdown int
}

func newTokenStore(seed uint64, ttl time.Duration, clock func() time.Time) *tokenStore {
	return &tokenStore{seed: seed, ttl: ttl, clock: clock, expiry: map[string]time.Time{}}
}

// issue mints a token valid for the TTL. Tokens are derived from the seed and
// a counter, so runs are reproducible; expired ones are forgotten here.
func (t *tokenStore) issue() (string, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	for tok, exp := range t.expiry {
		if !now.Before(exp) {
			delete(t.expiry, tok)
		}
	}
	t.issued++
	tok := fmt.Sprintf("%016x%016x", ordinals.Mix(t.seed, t.issued, saltToken), ordinals.Mix(t.seed, t.issued, saltToken+1))
	exp := now.Add(t.ttl)
	t.expiry[tok] = exp
	return tok, exp
}

// authorize reports whether tok is a live token, and counts the request
// toward a pending ExpireTokensAfter.
func (t *tokenStore) authorize(tok string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.expiry[tok]
	now := t.clock()
	if !ok || !now.Before(exp) {
		return false
	}
	if t.countdown > 0 {
		t.countdown--
		if t.countdown == 0 {
			t.expireAllLocked(now)
		}
	}
	return true
}

func (t *tokenStore) expireAllLocked(now time.Time) {
	for tok := range t.expiry {
		t.expiry[tok] = now
	}
}

func (t *tokenStore) expireAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireAllLocked(t.clock())
	t.countdown = 0
}

func (t *tokenStore) expireAfter(k int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.countdown = max(k, 0)
}

// ExpireTokens makes every token issued so far expire now: the next search
// with one gets 401 "Invalid access token". Tokens issued later are valid.
func (s *Server) ExpireTokens() {
	s.tokens.expireAll()
}

// ExpireTokensAfter lets k more authorized searches through, then expires
// every token issued by then, so search k+1 gets 401. Zero cancels a pending
// expiry.
func (s *Server) ExpireTokensAfter(k int) {
	s.tokens.expireAfter(k)
}

// tokenData is the data of a successful token exchange.
type tokenData struct {
	AccessToken   string `json:"access_token"`
	ExpirationUTC string `json:"expiration_utc"`
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.stats.notFound.Add(1)
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	// ParseForm reads a form body and the URL query alike; clients differ.
	if err := r.ParseForm(); err != nil {
		s.stats.badRequests.Add(1)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid request body: %v", err))
		return
	}
	key := r.Form.Get("secret_key")
	if key == "" || subtle.ConstantTimeCompare([]byte(key), []byte(s.secret)) != 1 {
		s.stats.tokensRefused.Add(1)
		writeError(w, s.badSecret, "Invalid secret key")
		return
	}
	tok, exp := s.tokens.issue()
	body, err := json.Marshal(envelope{
		Data:    tokenData{AccessToken: tok, ExpirationUTC: exp.UTC().Format(timeLayout)},
		Success: true,
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encoding token: %v", err))
		return
	}
	s.stats.tokensIssued.Add(1)
	apifault.WriteJSON(w, http.StatusOK, body)
}
