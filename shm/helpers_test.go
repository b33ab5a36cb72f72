package shm

import (
	"errors"
	"testing"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// mustNew creates a segment that is closed when the test ends.
func mustNew(tb testing.TB, name string, size int) *Segment {
	tb.Helper()
	s, err := New(name, size)
	if err != nil {
		tb.Fatalf("New(%q, %d): %v", name, size, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}
