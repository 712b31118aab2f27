package results

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Bounds of one results message, checked by Scan before anything is
// decoded: decoding turns a few bytes into far more memory (a 3-byte `{}`
// becomes a device of about 200 bytes, a 7-byte `"k":"",` a map entry of
// about 90), so a message is refused on its shape, not after its decoding.
const (
	// MaxObjectMembers bounds the members of any JSON object in a message:
	// the metadata entries of a device above all (the workers send at most
	// about 20; upstream devices carry fewer than 30 fields).
	MaxObjectMembers = 64
	// MaxDevicesPerMessage bounds the devices of one message (a worker's 1 to
	// 3 MiB chunk carries a few thousand).
	MaxDevicesPerMessage = 50000
	// MaxDepth bounds the nesting of a message (the object form nests 4 deep).
	MaxDepth = 8

	// objectFootprint and memberFootprint are what decoding costs per JSON
	// object (a DeviceUpdate, or a map with its first group) and per member
	// (a map entry with its key and value strings), measured on the
	// gateway's decoder and rounded up.
	objectFootprint = 256
	memberFootprint = 96
)

// ErrShape is wrapped by the errors of messages whose shape breaks a bound.
var ErrShape = errors.New("results message breaks a bound")

// Shape is what decoding a message allocates, counted without decoding it.
type Shape struct {
	// Objects counts JSON objects, Devices the objects that are array
	// elements, Members the members of all objects.
	Objects, Devices, Members int
}

// Footprint estimates, from above, the memory the decoded message holds
// besides the bytes of its strings (which are at most the message's length).
func (s Shape) Footprint() int64 {
	return int64(s.Objects)*objectFootprint + int64(s.Members)*memberFootprint
}

// Scan counts the objects, devices and members of a JSON message without
// decoding it and refuses one that breaks MaxObjectMembers,
// MaxDevicesPerMessage or MaxDepth. It does not validate the JSON: the
// decoder does, within the bounds Scan checked.
func Scan(raw []byte) (Shape, error) {
	var sh Shape
	type frame struct {
		object  bool
		members int
	}
	var stack [MaxDepth]frame
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '"':
			end, ok := stringEnd(raw, i)
			if !ok {
				return sh, fmt.Errorf("%w: unterminated string at byte %d", ErrShape, i)
			}
			i = end
		case '{', '[':
			if depth == MaxDepth {
				return sh, fmt.Errorf("%w: nested deeper than %d", ErrShape, MaxDepth)
			}
			if c == '{' {
				sh.Objects++
				if depth > 0 && !stack[depth-1].object { //nolint:gosec // 0 < depth <= MaxDepth
					if sh.Devices++; sh.Devices > MaxDevicesPerMessage {
						return sh, fmt.Errorf("%w: more than %d devices in one message", ErrShape, MaxDevicesPerMessage)
					}
				}
			}
			stack[depth] = frame{object: c == '{'}
			depth++
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case ':':
			if depth > 0 && stack[depth-1].object { //nolint:gosec // 0 < depth <= MaxDepth
				sh.Members++
				if stack[depth-1].members++; stack[depth-1].members > MaxObjectMembers { //nolint:gosec // 0 < depth <= MaxDepth
					return sh, fmt.Errorf("%w: an object (a device's metadata?) has more than %d members", ErrShape, MaxObjectMembers)
				}
			}
		}
	}
	return sh, nil
}

// stringEnd is the index of the quote closing the string opened at start.
func stringEnd(raw []byte, start int) (int, bool) {
	j := start + 1
	for {
		k := bytes.IndexByte(raw[j:], '"')
		if k < 0 {
			return 0, false
		}
		j += k
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for b := j - 1; b > start && raw[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			return j, true
		}
		j++
	}
}

// The segment contract: what one StreamStatus call of a worker may carry,
// which the worker keeps to (workers/chunk) and the gateway's defaults admit
// (gateway/server.DefaultAdmission, gateway/ingest.DefaultLimits), both
// derived from these constants so that a worker's largest segment always
// fits a gateway with default limits.
const (
	// MaxMessageBytes is the largest message the gateway receives by
	// default (gRPC's default limit), what a StreamStatus call reserves of
	// the ingest budget before it reads.
	MaxMessageBytes = 4 << 20
	// MaxChunkBytes bounds the results of one chunk, under MaxMessageBytes
	// with room for the chunk's other fields.
	MaxChunkBytes = 3 << 20
	// MaxSegmentChunks, MaxSegmentBytes and MaxSegmentDevices bound the
	// chunks, the results bytes and the devices of one segment.
	MaxSegmentChunks  = 100
	MaxSegmentBytes   = 48 << 20
	MaxSegmentDevices = 50000
	// MaxSegmentCharge bounds what the gateway charges one segment of its
	// ingest budget besides the call's MaxMessageBytes reservation: the
	// wire size of its chunks plus the decode estimate of their results
	// (Charge). Dense devices (many small metadata entries) reach it long
	// before MaxSegmentBytes.
	MaxSegmentCharge = 56 << 20
	// SegmentsInFlight is how many segments a worker has on their way at
	// once by default; one caller's share of the ingest budget holds that
	// many of the largest.
	SegmentsInFlight = 2
)

// Defaults of how long the gateway gives one StreamStatus call: to read
// its chunks, and then to apply its segment in one database transaction.
// Workers wait longer than both together for an answer.
const (
	ReadTimeout  = 2 * time.Minute
	ApplyTimeout = 5 * time.Minute
)

// CallCharge is the most one worker call holds of the gateway's ingest
// budget: its reservation and its segment's charge.
const CallCharge = MaxMessageBytes + MaxSegmentCharge

// ChunkWireOverhead bounds what a chunk's protobuf framing and service
// fields add to its results message on the wire (agent id, service names,
// indexes, timestamps).
const ChunkWireOverhead = 512

// Charge is what the gateway charges a results message of its ingest
// budget before decoding it: its bytes and the decode estimate of its shape.
func Charge(raw []byte) (int64, error) {
	sh, err := Scan(raw)
	if err != nil {
		return 0, err
	}
	return int64(len(raw)) + sh.Footprint(), nil
}
