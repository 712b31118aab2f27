package store

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInvalidSegment matches (errors.Is) every InvalidSegmentError.
var ErrInvalidSegment = errors.New("invalid segment")

// InvalidSegmentError is returned for a segment that can never be stored
// however often it is sent: its run id is not a UUID, its segment number is
// out of range, or PostgreSQL refused its data (SQLSTATE class 22). The
// gateway answers InvalidArgument with its Reason, so that nobody retries it.
type InvalidSegmentError struct {
	// Reason names the field or the rule, and never holds PostgreSQL's text.
	Reason string
	err    error
}

// Error implements error.
func (e *InvalidSegmentError) Error() string {
	if e.err != nil {
		return "invalid segment: " + e.Reason + ": " + e.err.Error()
	}
	return "invalid segment: " + e.Reason
}

// Unwrap returns the PostgreSQL error, if any.
func (e *InvalidSegmentError) Unwrap() error { return e.err }

// Is makes every InvalidSegmentError match ErrInvalidSegment.
func (e *InvalidSegmentError) Is(target error) bool { return target == ErrInvalidSegment }

// maxRefusalReason bounds the reason recorded for a run's refused devices.
const maxRefusalReason = 256

// admit checks a segment's fields before anything is written and drops the
// device updates that PostgreSQL would refuse (a NUL byte or invalid UTF-8
// in any text field, in text or jsonb), so that one bad device costs that
// device and not the segment, its run and every later run of the source.
// The run's error text, which the worker writes, is cleaned instead: a run
// must be able to end whatever its error says. It returns how many devices
// it refused and the reason of the first.
func admit(seg *Segment) (refused int, reason string, err error) {
	if _, err := uuid.Parse(seg.RunID); err != nil {
		return 0, "", &InvalidSegmentError{Reason: fmt.Sprintf("sync_run_id %q is not a UUID", clip(seg.RunID, 64))}
	}
	if seg.Segment < 0 || seg.Segment > math.MaxInt32 {
		return 0, "", &InvalidSegmentError{Reason: fmt.Sprintf("segment %d is out of range [0, %d]", seg.Segment, math.MaxInt32)}
	}
	if badText(seg.Error) != "" {
		seg.Error = strings.ToValidUTF8(strings.ReplaceAll(seg.Error, "\x00", ""), "\uFFFD")
	}
	kept := seg.Devices[:0:0]
	for i := range seg.Devices {
		if why := unstorable(&seg.Devices[i]); why != "" {
			if refused == 0 {
				reason = clip(fmt.Sprintf("device %d of segment %d: %s", i, seg.Segment, why), maxRefusalReason)
				kept = append(kept, seg.Devices[:i]...)
			}
			refused++
			continue
		}
		if refused > 0 {
			kept = append(kept, seg.Devices[i])
		}
	}
	if refused > 0 {
		seg.Devices = kept
	}
	return refused, reason, nil
}

// unstorable names the first field of d that PostgreSQL cannot store, or
// returns "".
func unstorable(d *Device) string {
	fields := [...]struct{ name, value string }{
		{"device id", d.DeviceID}, {"ip", d.IP}, {"hostname", d.Hostname}, {"name", d.Name},
		{"vendor", d.Vendor}, {"model", d.Model}, {"os", d.OS},
	}
	for _, f := range fields {
		if why := badText(f.value); why != "" {
			return f.name + " " + why
		}
	}
	for _, mac := range d.MACs {
		if why := badText(mac); why != "" {
			return "mac " + why
		}
	}
	for k, v := range d.Metadata {
		if why := badText(k); why != "" {
			return "a metadata key " + why
		}
		if why := badText(v); why != "" {
			return fmt.Sprintf("metadata[%q] %s", clip(k, 64), why)
		}
	}
	return ""
}

// badText says why PostgreSQL's text and jsonb types would refuse s.
func badText(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return "contains a NUL byte"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	return ""
}

// clip bounds a client-supplied string for messages and logs: valid UTF-8,
// at most n bytes, marked when cut.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// invalidData turns PostgreSQL's data exceptions (SQLSTATE class 22: a
// value the column type refuses) into an InvalidSegmentError: sending the
// same segment again can never succeed. Other errors pass unchanged.
func invalidData(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
		return &InvalidSegmentError{Reason: "PostgreSQL refused its data (SQLSTATE " + pgErr.Code + ")", err: err}
	}
	return err
}
