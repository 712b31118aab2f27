package apifault

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Reply is an emulator's answer as a test client reads it.
type Reply struct {
	// Status is the HTTP status code.
	Status int
	// Header is the answer's header.
	Header http.Header
	// Body is the whole body.
	Body []byte
}

// Do sends req with hc and reads the whole answer. Errors name the request
// and wrap the client's, so a cancelled context stays recognisable.
func Do(hc *http.Client, req *http.Request) (Reply, error) {
	resp, err := hc.Do(req) //nolint:gosec // G704: tests request the emulator they started; the URL is theirs.
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Reply{}, fmt.Errorf("reading %s: %w", req.URL, err)
	}
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// DecodeOK unmarshals the JSON body of a 200 answer into a T. Any other
// status is an error carrying the body, so a test sees what the emulator
// said.
func DecodeOK[T any](status int, body []byte) (T, error) {
	var v T
	if status != http.StatusOK {
		return v, fmt.Errorf("status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("decoding page: %w", err)
	}
	return v, nil
}
