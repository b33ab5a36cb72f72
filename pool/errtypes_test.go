package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var errNotFound = errors.New("not found")

type queryError struct {
	Table string
	Code  int
}

func (e *queryError) Error() string { return fmt.Sprintf("query %s: code %d", e.Table, e.Code) }

func init() {
	RegisterError("test.notfound", errNotFound)
	RegisterErrorType[*queryError]("test.queryerror")
}

// failWith returns the error its argument names, wrapped.
var failWith = Register("test.failwith", func(kind string) (int, error) {
	switch kind {
	case "sentinel":
		return 0, fmt.Errorf("user 7: %w", errNotFound)
	case "typed":
		return 0, fmt.Errorf("load: %w", &queryError{Table: "users", Code: 42})
	case "both":
		return 0, errors.Join(errNotFound, &queryError{Table: "t", Code: 1})
	}
	return 0, errors.New("plain failure")
})

func TestErrorsKeepTheirType(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	t.Run("a registered sentinel, wrapped", func(t *testing.T) {
		_, err := Apply(ctx, p, failWith, "sentinel")
		var te *TaskError
		if !errors.As(err, &te) || !errors.Is(err, errNotFound) {
			t.Fatalf("Apply = %v, want a *TaskError that Is errNotFound", err)
		}
		if got := te.Err.Error(); got != "user 7: not found" {
			t.Fatalf("text = %q, want the worker's %q", got, "user 7: not found")
		}
	})
	t.Run("a registered type, wrapped", func(t *testing.T) {
		_, err := Apply(ctx, p, failWith, "typed")
		var qe *queryError
		if !errors.As(err, &qe) || qe.Table != "users" || qe.Code != 42 {
			t.Fatalf("Apply = %v; errors.As gave %+v, want &{users 42}", err, qe)
		}
		if errors.Is(err, errNotFound) {
			t.Fatalf("Apply = %v Is errNotFound, want not", err)
		}
	})
	t.Run("a type goes before a sentinel", func(t *testing.T) {
		_, err := Apply(ctx, p, failWith, "both")
		var qe *queryError
		if !errors.As(err, &qe) || qe.Code != 1 {
			t.Fatalf("Apply = %v, want the *queryError to travel", err)
		}
	})
	t.Run("an unregistered error keeps its text and where it came from", func(t *testing.T) {
		_, err := Apply(ctx, p, failWith, "plain")
		var te *TaskError
		if !errors.As(err, &te) || te.Err.Error() != "plain failure" {
			t.Fatalf("Apply = %v, want a *TaskError with text %q", err, "plain failure")
		}
		if errors.Is(err, errNotFound) {
			t.Fatal("an unregistered error Is errNotFound")
		}
		if !strings.Contains(te.Stack, "errtypes_test.go") || !strings.Contains(te.Stack, "error returned by") {
			t.Fatalf("Stack = %q, want the function that returned the error", te.Stack)
		}
		if strings.Contains(te.Error(), "\n") {
			t.Fatalf("Error() = %q, want one line for a returned error", te.Error())
		}
	})
}

// A stErrFull body comes from a worker: malformed ones give an error,
// never a panic or a huge allocation.
func TestParseTaskErrorHostile(t *testing.T) {
	good := appendTaskError(nil, fmt.Errorf("x: %w", &queryError{Table: "a", Code: 3}), "here")
	if err, stack := parseTaskError(good); stack != "here" || !errors.As(err, new(*queryError)) {
		t.Fatalf("parseTaskError(good) = %v, %q", err, stack)
	}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"name longer than the body", []byte{200, 'a'}},
		{"text length past the end", []byte{0, 0xff, 0xff, 0xff, 0x7f}},
		{"text over maxText", append([]byte{0, 0, 0, 2, 0}, make([]byte, 1<<17)...)},
		{"missing stack length", []byte{0, 1, 0, 0, 0, 'x'}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err, _ := parseTaskError(tt.b)
			if !errors.Is(err, errBrokenPeer) {
				t.Fatalf("parseTaskError = %v, want errBrokenPeer", err)
			}
		})
	}
	for i := range len(good) {
		parseTaskError(good[:i]) // every prefix: an error, no panic
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 0xff // the encoded value
	if err, _ := parseTaskError(bad); err == nil || errors.As(err, new(*queryError)) {
		t.Fatalf("parseTaskError(corrupt value) = %v, want the text without the type", err)
	}
}
