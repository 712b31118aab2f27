package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrPageTooLarge is wrapped by DecodeList when a page holds more items than
// its limit. Asking again gets the same page, so clients do not retry it.
var ErrPageTooLarge = errors.New("page refused for its length")

// PageItemLimit is how many items a page asked for with page size requested
// may hold: twice the page size, so a server that rounds a little up still
// serves, while one that ignores the page size (or answers millions of empty
// objects) is refused before its page is held in memory.
func PageItemLimit(requested int) int {
	return 2 * max(requested, 1)
}

// Members maps the member names of a JSON object to functions that decode
// their values from the decoder, for DecodeObject.
type Members map[string]func(dec *json.Decoder) error

// DecodeObject reads the next JSON value of dec, which must be an object or
// null, member by member: a member named in members (exactly, else ignoring
// case, as encoding/json matches field names) is decoded by its function,
// any other member is skipped token by token, so that nothing the caller
// does not keep is held. It reports whether the value was an object.
func DecodeObject(dec *json.Decoder, members Members) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, fmt.Errorf("reading an object: %w", err)
	}
	switch tok {
	case nil:
		return false, nil
	case json.Delim('{'):
	default:
		return false, fmt.Errorf("want an object or null, found %s", describe(tok))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return true, fmt.Errorf("reading a member name: %w", err)
		}
		name, _ := tok.(string) // inside an object, Token returns names as strings
		decode := lookup(members, name)
		if decode == nil {
			if err := skip(dec); err != nil {
				return true, fmt.Errorf("skipping member %q: %w", Excerpt(name, 40), err)
			}
			continue
		}
		if err := decode(dec); err != nil {
			return true, fmt.Errorf("member %q: %w", name, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return true, fmt.Errorf("reading the end of an object: %w", err)
	}
	return true, nil
}

// lookup finds name's decoder: an exact match first, else one that differs
// only in case.
func lookup(members Members, name string) func(*json.Decoder) error {
	if f, ok := members[name]; ok {
		return f
	}
	for k, f := range members {
		if strings.EqualFold(k, name) {
			return f
		}
	}
	return nil
}

// DecodeList reads the next JSON value of dec, which must be an array or
// null, one item at a time: each is decoded into a new T and handed to each,
// whose error stops the list. Once the array holds more than limit items it
// is refused with an error wrapping ErrPageTooLarge, having read no further
// and kept nothing beyond the limit. It reports whether the value was an
// array.
func DecodeList[T any](dec *json.Decoder, limit int, each func(*T) error) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, fmt.Errorf("reading a list: %w", err)
	}
	switch tok {
	case nil:
		return false, nil
	case json.Delim('['):
	default:
		return false, fmt.Errorf("want a list or null, found %s", describe(tok))
	}
	for n := 0; dec.More(); n++ {
		if n == limit {
			return true, fmt.Errorf("%w: more than %d items", ErrPageTooLarge, limit)
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return true, fmt.Errorf("item %d: %w", n, err)
		}
		if err := each(&v); err != nil {
			return true, fmt.Errorf("item %d: %w", n, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return true, fmt.Errorf("reading the end of a list: %w", err)
	}
	return true, nil
}

// skip reads past the next JSON value token by token, holding at most one
// token (a string or number) at a time.
func skip(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err //nolint:wrapcheck // the callers say what was being skipped
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// describe names a token for an error without repeating a long value.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a list"
		}
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return fmt.Sprintf("%T", tok)
	}
}
