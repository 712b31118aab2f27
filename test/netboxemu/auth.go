package netboxemu

import (
	"crypto/subtle"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// Token forms: v1 is 40 alphanumerics (generated ones are hex, but a user
// may set any key); v2 is nbt_<key>.<token>.
var (
	v1Form = regexp.MustCompile(`^[0-9A-Za-z]{40}$`)
	v2Form = regexp.MustCompile(`^nbt_[0-9A-Za-z]{12}\.[0-9A-Za-z]{40}$`)
)

// The detail strings NetBox answers 403 with.
const (
	detailNoCredentials = "Authentication credentials were not provided."
	detailInvalidV1     = "Invalid v1 token"
	detailInvalidV2     = "Invalid v2 token"
	detailExpired       = "Token expired"
)

// authenticator checks Authorization headers; mu guards the expiry state.
type authenticator struct {
	v1, v2     string
	noV1, noV2 bool

	mu        sync.Mutex
	expired   bool
	countdown int // authorized requests left before expiry, 0: none
}

func newAuthenticator(opts Options) (*authenticator, error) {
	a := &authenticator{v1: opts.V1Token, v2: opts.V2Token, noV1: opts.DisableV1, noV2: opts.DisableV2}
	if a.v1 == "" {
		a.v1 = fmt.Sprintf("%016x%016x%08x", ordinals.Mix(opts.Seed, 1, 0x7631), ordinals.Mix(opts.Seed, 2, 0x7631), uint32(ordinals.Mix(opts.Seed, 3, 0x7631)))
	}
	if a.v2 == "" {
		a.v2 = fmt.Sprintf("nbt_%012x.%016x%016x%08x", ordinals.Mix(opts.Seed, 1, 0x7632)>>16,
			ordinals.Mix(opts.Seed, 2, 0x7632), ordinals.Mix(opts.Seed, 3, 0x7632), uint32(ordinals.Mix(opts.Seed, 4, 0x7632)))
	}
	if !v1Form.MatchString(a.v1) {
		return nil, fmt.Errorf("V1Token %q is not 40 hex digits", a.v1)
	}
	if !v2Form.MatchString(a.v2) {
		return nil, fmt.Errorf("V2Token %q is not nbt_<12 alphanumerics>.<40 alphanumerics>", a.v2)
	}
	return a, nil
}

// authenticate checks one Authorization header and returns the 403 detail
// when it fails. As in NetBox 4.5+, the token's form chooses its version
// (v2 tokens start with nbt_) and either scheme word, Token or Bearer, is
// accepted for both; before 4.5 (DisableV2) only Token is a scheme and
// every token is looked up as a v1 key. The scheme word is matched without
// case, as Django REST framework does.
func (a *authenticator) authenticate(header string) (string, bool) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(header), " ")
	cred = strings.TrimSpace(cred)
	if !strings.EqualFold(scheme, "Token") && (a.noV2 || !strings.EqualFold(scheme, "Bearer")) {
		return detailNoCredentials, false
	}
	switch {
	case strings.HasPrefix(cred, "nbt_") && !a.noV2:
		if !equal(cred, a.v2) {
			return detailInvalidV2, false
		}
	case a.noV1 || !equal(cred, a.v1):
		return detailInvalidV1, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.expired {
		return detailExpired, false
	}
	if a.countdown > 0 {
		a.countdown--
		a.expired = a.countdown == 0
	}
	return "", true
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// V1Token returns the accepted v1 token (40 hex digits); send it as
// "Authorization: Token <token>".
func (s *Server) V1Token() string { return s.auth.v1 }

// V2Token returns the accepted v2 token, nbt_<key>.<token>; send it as
// "Authorization: Bearer <token>".
func (s *Server) V2Token() string { return s.auth.v2 }

// ExpireTokens makes both tokens expired now: requests with them get 403
// "Token expired" until RenewTokens, as a NetBox token past its expiry does.
func (s *Server) ExpireTokens() {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.expired = true
	s.auth.countdown = 0
}

// ExpireTokensAfter lets k more authorized requests through, then expires
// both tokens, so request k+1 gets 403 "Token expired". Zero cancels a
// pending expiry.
func (s *Server) ExpireTokensAfter(k int) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.countdown = max(k, 0)
}

// RenewTokens undoes an expiry, as an administrator extending the tokens.
func (s *Server) RenewTokens() {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.expired = false
	s.auth.countdown = 0
}
