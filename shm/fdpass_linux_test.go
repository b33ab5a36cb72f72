package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/fdpass"
	"golang.org/x/sys/unix"
)

// mappings counts the lines of /proc/self/maps that map the memfd labelled
// label.
func mappings(tb testing.TB, label string) int {
	tb.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Count(maps, []byte("/memfd:"+label+" "))
}

// fakeWorker makes this process act as a worker whose parent holds the
// segment seg: it keeps a copy of seg's descriptor, closes seg (so that
// only fetched mappings remain here), and sets fdpass.Fetch to hand out
// duplicates of that copy. It returns the segment id and a fetch counter.
func fakeWorker(tb testing.TB, seg *Segment) (id uint64, fetches *int) {
	tb.Helper()
	id = seg.ID()
	parentCopy := dupFile(tb, seg)
	tb.Cleanup(func() { parentCopy.Close() })
	if err := seg.Close(); err != nil {
		tb.Fatal(err)
	}
	fetches = new(int)
	fdpass.Fetch = func(want uint64) (*os.File, error) {
		*fetches++
		if want != id {
			return nil, fmt.Errorf("parent has no segment %#x", want)
		}
		fd, err := unix.FcntlInt(parentCopy.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), "fetched"), nil
	}
	tb.Cleanup(func() {
		fdpass.Release(id) // whatever the test left fetched
		fdpass.Fetch = nil
	})
	return id, fetches
}

// TestReleaseFetched: a segment Lookup fetched stays mapped until
// fdpass.Release drops it; then its mapping is gone, Release again does
// nothing, and a later Lookup fetches it anew.
func TestReleaseFetched(t *testing.T) {
	name := fmt.Sprintf("release-%x", rand.Uint64())
	label := namePrefix + "-" + name
	seg, err := New(name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	id, fetches := fakeWorker(t, seg)
	if n := mappings(t, label); n != 0 {
		t.Fatalf("%d mappings before Lookup, want 0", n)
	}
	for round := 1; round <= 2; round++ {
		got, err := Lookup(id)
		if err != nil {
			t.Fatalf("round %d: Lookup = %v", round, err)
		}
		got.Bytes()[0] = byte(round)
		if n := mappings(t, label); n != 1 || *fetches != round {
			t.Fatalf("round %d: after Lookup %d mappings, %d fetches, want 1 and %d", round, n, *fetches, round)
		}
		if err := fdpass.Release(id); err != nil {
			t.Fatalf("round %d: Release = %v", round, err)
		}
		if n := mappings(t, label); n != 0 {
			t.Fatalf("round %d: after Release %d mappings, want 0", round, n)
		}
		if got.Bytes() != nil {
			t.Fatalf("round %d: released segment still has Bytes()", round)
		}
		if err := fdpass.Release(id); err != nil {
			t.Fatalf("round %d: second Release = %v, want nil", round, err)
		}
	}
}

// TestReleaseLeavesOwnSegments: Release never closes a segment this process
// created or attached itself, nor fails for an unknown id.
func TestReleaseLeavesOwnSegments(t *testing.T) {
	created := mustNew(t, "own", 64)
	attached, err := Attach(dupFile(t, mustNew(t, "other", 64)))
	if err != nil {
		t.Fatal(err)
	}
	defer attached.Close()
	tests := []struct {
		name string
		seg  *Segment
	}{
		{"created", created},
		{"attached", attached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := fdpass.Release(tt.seg.ID()); err != nil {
				t.Fatalf("Release = %v, want nil", err)
			}
			if tt.seg.Bytes() == nil {
				t.Fatal("Release closed a segment it did not fetch")
			}
			if got, err := Lookup(tt.seg.ID()); err != nil || got.ID() != tt.seg.ID() {
				t.Fatalf("Lookup after Release = %v, %v, want the live segment", got, err)
			}
		})
	}
	if err := fdpass.Release(rand.Uint64()); err != nil {
		t.Fatalf("Release(unknown id) = %v, want nil", err)
	}
}

// closedLog records fdpass.Closed calls for the length of a test.
type closedLog struct {
	mu   sync.Mutex
	ids  []uint64
	segs map[uint64]*Segment // watched segments, by id
}

// watch makes the hook call a method of s that takes its lock: if Close
// ran the hook with that lock held, Close would never return.
func (l *closedLog) watch(s *Segment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.segs[s.ID()] = s
}

func recordClosed(tb testing.TB) *closedLog {
	tb.Helper()
	l := &closedLog{segs: map[uint64]*Segment{}}
	fdpass.Closed = func(id uint64) {
		// The hook runs with no shm lock held: calling back in must not
		// deadlock (Lookup takes the registry lock, Frozen the segment's).
		Lookup(id)
		l.mu.Lock()
		l.ids = append(l.ids, id)
		s := l.segs[id]
		l.mu.Unlock()
		if s != nil {
			s.Frozen()
		}
	}
	tb.Cleanup(func() { fdpass.Closed = nil })
	return l
}

func (l *closedLog) take() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.ids
	l.ids = nil
	return ids
}

// TestClosedHook: fdpass.Closed hears of each segment this process created
// once, when it is closed, however many times or from however many
// goroutines Close is called, and never of segments it attached or fetched.
func TestClosedHook(t *testing.T) {
	log := recordClosed(t)
	newArray := func() (*Segment, error) {
		a, err := NewArray[float64](16)
		if err != nil {
			return nil, err
		}
		return a.Segment(), nil
	}
	named := func() (*Segment, error) { return CreateNamed(fmt.Sprintf("closed-%x", rand.Uint64()), 64) }
	tests := []struct {
		name string
		make func() (*Segment, error)
	}{
		{"New", func() (*Segment, error) { return New("closed", 64) }},
		{"NewArray", newArray},
		{"CreateNamed", named},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.make()
			if err != nil {
				t.Fatal(err)
			}
			log.watch(s)
			other, err := attach(dupFile(t, s), false) // as OpenNamed for a named one
			if err != nil {
				t.Fatal(err)
			}
			if err := other.Close(); err != nil {
				t.Fatal(err)
			}
			if got := log.take(); len(got) != 0 {
				t.Fatalf("Closed called with %#x for an attached segment, want no call", got)
			}
			err = within(t, 5*time.Second, func() error {
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for i := range errs {
					wg.Go(func() { errs[i] = s.Close() })
				}
				wg.Wait()
				return errors.Join(append(errs, s.Close())...)
			})
			if err != nil {
				t.Fatalf("Close = %v", err)
			}
			if got, want := log.take(), []uint64{s.ID()}; !slices.Equal(got, want) {
				t.Fatalf("Closed calls = %#x, want exactly %#x", got, want)
			}
		})
	}
	t.Run("fetched and released", func(t *testing.T) {
		seg, err := New("closed-fetched", 64)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := fakeWorker(t, seg) // closes seg: one call
		if got := log.take(); !slices.Equal(got, []uint64{id}) {
			t.Fatalf("Closed calls = %#x, want %#x for the parent's Close", got, id)
		}
		got, err := Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := fdpass.Release(id); err != nil {
			t.Fatal(err)
		}
		got.Close()
		if calls := log.take(); len(calls) != 0 {
			t.Fatalf("Closed calls = %#x for a fetched segment, want none", calls)
		}
	})
}

// TestClosedHookOnCleanup: a created segment dropped without Close still
// reaches fdpass.Closed, once, from its cleanup. It runs in a child: the
// cleanup leaves the mapping in place (a slice may point into it), which
// this process's leak check would rightly report.
func TestClosedHookOnCleanup(t *testing.T) {
	startChild(t, "dropped", nil).wait(t)
}
