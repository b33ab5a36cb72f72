package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/mproc/mproc/internal/codec"
)

// Errors that keep their identity across the process boundary. A task's
// error is only bytes by the time it reaches the parent; these
// registrations say which of those bytes stand for a sentinel value the
// parent holds too, or for a value of an error type the codec can carry.

// errKind is one registered error: a sentinel or a type.
type errKind struct {
	name     string
	sentinel error // for RegisterError
	// For RegisterErrorType: as finds an error of the type in a chain and
	// encodes it; decode rebuilds it.
	as     func(dst []byte, err error) ([]byte, bool)
	decode func(b []byte) (error, error)
}

var errRegistry struct {
	mu     sync.Mutex
	byName map[string]*errKind
	types  []*errKind // in registration order
	values []*errKind
}

// RegisterError makes target keep its identity across the process
// boundary: a task error for which errors.Is(err, target) holds in the
// worker comes back as a *TaskError for which it holds in the parent too,
// carrying the worker's error text. name must be the same in every process
// (it is what travels) and at most 255 bytes. Call it at package
// initialisation, as Register; it panics on an empty, long or reused name,
// a nil target, or a call after Init.
func RegisterError(name string, target error) {
	if target == nil {
		panic("pool: RegisterError needs an error value")
	}
	addErrKind(&errKind{name: name, sentinel: target})
}

// RegisterErrorType makes errors of type E (typically a pointer to a
// struct) cross the process boundary as values: a task error with an E in
// its chain (errors.As) is encoded through the package's codec (exported
// fields only) and rebuilt in the parent, so that errors.As(err, &e) on
// the *TaskError gives an E with the worker's field values, and its Error
// text is the worker's. Registered types are tried before registered
// values, each in registration order; the first that matches travels. An
// E that fails to encode travels as its text. Rules for name and when to
// call it are those of RegisterError.
func RegisterErrorType[E error](name string) {
	c := codec.For[E]()
	addErrKind(&errKind{
		name: name,
		as: func(dst []byte, err error) ([]byte, bool) {
			var e E
			if !errors.As(err, &e) {
				return dst, false
			}
			out, encErr := c.Append(dst, e)
			if encErr != nil || len(out)-len(dst) > maxText {
				return dst, false
			}
			return out, true
		},
		decode: func(b []byte) (error, error) {
			var e E
			if err := c.Decode(b, &e); err != nil {
				return nil, err
			}
			return e, nil
		},
	})
}

// A task that returns its context's error is understood in the parent.
func init() {
	RegisterError("context.canceled", context.Canceled)
	RegisterError("context.deadline", context.DeadlineExceeded)
}

func addErrKind(k *errKind) {
	if k.name == "" || len(k.name) > maxNameLen {
		panic(fmt.Sprintf("pool: error name %.40q: want 1 to %d bytes", k.name, maxNameLen))
	}
	registry.mu.Lock()
	closed := registry.closed
	registry.mu.Unlock()
	if closed {
		panic(fmt.Sprintf("pool: error %q registered after pool.Init: register at package init", k.name))
	}
	errRegistry.mu.Lock()
	defer errRegistry.mu.Unlock()
	if errRegistry.byName == nil {
		errRegistry.byName = make(map[string]*errKind)
	}
	if _, ok := errRegistry.byName[k.name]; ok {
		panic(fmt.Sprintf("pool: error %q registered twice", k.name))
	}
	errRegistry.byName[k.name] = k
	if k.as != nil {
		errRegistry.types = append(errRegistry.types, k)
	} else {
		errRegistry.values = append(errRegistry.values, k)
	}
}

// appendTaskError encodes a task's error as a stErrFull item body:
//
//	nameLen u8 | name | textLen u32 | text | stackLen u32 | stack | value
//
// name is the registered error it matches ("" if none), text its Error
// (cut to maxText), stack where it was returned, value its encoding when
// name is a registered type.
func appendTaskError(dst []byte, err error, stack string) []byte {
	kind, mark := (*errKind)(nil), len(dst)
	errRegistry.mu.Lock()
	types, values := errRegistry.types, errRegistry.values
	errRegistry.mu.Unlock()
	var value []byte
	for _, k := range types {
		var ok bool
		if value, ok = k.as(nil, err); ok {
			kind = k
			break
		}
	}
	if kind == nil {
		for _, k := range values {
			if errors.Is(err, k.sentinel) {
				kind = k
				break
			}
		}
	}
	name := ""
	if kind != nil {
		name = kind.name
	}
	dst = appendName(dst[:mark], name)
	text := truncateText(err.Error(), maxText)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(text)))
	dst = append(dst, text...)
	stack = truncateText(stack, maxText)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(stack)))
	dst = append(dst, stack...)
	return append(dst, value...)
}

// parseTaskError rebuilds a stErrFull item body. Every length is checked
// against the bytes that hold it: the body comes from a worker.
func parseTaskError(b []byte) (err error, stack string) {
	name, rest, perr := parseName(b)
	text, rest, ok := cutText(rest, perr == nil)
	stack, value, ok := cutText(rest, ok)
	if !ok {
		return fmt.Errorf("%w: a malformed task error", errBrokenPeer), ""
	}
	re := &remoteError{text: text}
	if name == "" {
		return re, stack
	}
	errRegistry.mu.Lock()
	k := errRegistry.byName[name]
	errRegistry.mu.Unlock()
	switch {
	case k == nil:
		re.text += fmt.Sprintf(" (error %q is not registered in this process)", name)
	case k.sentinel != nil:
		re.cause = k.sentinel
	default:
		v, derr := k.decode(value)
		if derr != nil {
			re.text += fmt.Sprintf(" (decode error %q: %v)", name, derr)
		} else {
			re.cause = v
		}
	}
	return re, stack
}

// cutText splits a u32-length-prefixed text of at most maxText bytes off b.
func cutText(b []byte, ok bool) (text string, rest []byte, _ bool) {
	if !ok || len(b) < 4 {
		return "", nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxText || uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// remoteError is a task's error rebuilt in the parent: the worker's text,
// and the registered sentinel or decoded typed error it matched, if any.
type remoteError struct {
	text  string
	cause error
}

func (e *remoteError) Error() string { return e.text }
func (e *remoteError) Unwrap() error { return e.cause }
