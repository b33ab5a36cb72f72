package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// taken counts what this process holds: lines of /proc/self/maps that map
// a segment (a memfd or a /dev/shm file), and open descriptors.
type taken struct{ segmentMaps, fds int }

func countTaken(tb testing.TB) taken {
	tb.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		tb.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	n := bytes.Count(maps, []byte("/memfd:")) + bytes.Count(maps, []byte(" "+shmDir+"/"))
	return taken{segmentMaps: n, fds: len(fds)}
}

// TestPrefaultFailureReleases makes populating a new mapping fail with
// ENOMEM, the memory limit prefault exists to report, and checks that each
// constructor returns that error and keeps nothing: no mapping, no
// descriptor, no /dev/shm file.
func TestPrefaultFailureReleases(t *testing.T) {
	defer func(m func([]byte, int) error) { madvise = m }(madvise)
	madvise = func([]byte, int) error { return unix.ENOMEM }
	name := fmt.Sprintf("populate-%x", rand.Uint64())
	tests := []struct {
		name string
		make func() (*Segment, error)
	}{
		{"New", func() (*Segment, error) { return New("populate", prefaultMin) }},
		{"NewArray", func() (*Segment, error) {
			a, err := NewArray[int64](prefaultMin / 8)
			if err != nil {
				return nil, err
			}
			return a.Segment(), nil
		}},
		{"CreateNamed", func() (*Segment, error) { return CreateNamed(name, prefaultMin) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countTaken(t)
			s, err := tt.make()
			if err == nil {
				s.Close()
				t.Fatal("constructor succeeded although populating failed")
			}
			if !errors.Is(err, unix.ENOMEM) {
				t.Errorf("error = %v, want one wrapping ENOMEM", err)
			}
			if after := countTaken(t); after != before {
				t.Errorf("after the failure: %+v, want %+v as before (leaked mapping or descriptor)", after, before)
			}
			if _, err := os.Stat(shmDir + "/" + namePrefix + "-" + name); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Stat(named file) = %v, want not exist", err)
			}
		})
	}
}

// TestCloseReportsAndReleases: when one release step fails (here the
// descriptor was closed behind the Segment's back), Close still does the
// others, reports the failure, and a second Close returns nil.
func TestCloseReportsAndReleases(t *testing.T) {
	before := countTaken(t)
	s, err := New("close-error", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.File().Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Close() = %v, want an error wrapping os.ErrClosed", err)
	}
	if after := countTaken(t); after != before {
		t.Errorf("after Close: %+v, want %+v as before", after, before)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}
