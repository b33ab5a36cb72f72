package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQueueTwoViewsOneProcess: two views of one queue in one process (the
// creator's and an UnmarshalBinary of it) share this process's lane, so
// their Puts must be serialised with each other, not only within each view.
// Every item arrives exactly once and in order per producer goroutine, and
// detaching one view leaves the lane to the other.
func TestQueueTwoViewsOneProcess(t *testing.T) {
	const perView = 200000
	q, _ := mustQueue(t, &QueueConfig{Producers: 2, Ring: &RingConfig{Capacity: 1024}})
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q2 Queue[item]
	if err := q2.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for id, v := range []*Queue[item]{q, &q2} {
		wg.Go(func() {
			for i := range int64(perView) {
				if err := v.Put(ctx, item{int32(id), i}); err != nil {
					t.Errorf("view %d: Put(%d) = %v", id, i, err)
					return
				}
			}
		})
	}
	next := make(map[int32]int64)
	for next[0]+next[1] < 2*perView {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatalf("Get() = %v with %v delivered", err, next)
		}
		checkOrder(t, next, it)
	}
	wg.Wait()
	if err := q2.Detach(); err != nil {
		t.Fatalf("Detach() = %v", err)
	}
	if err := q2.Detach(); err != nil {
		t.Fatalf("second Detach() = %v", err)
	}
	lanes := q.st.q
	if lanes.mine < 0 || lanes.owners[lanes.mine].owner.Load() != uint32(os.Getpid()) {
		t.Fatalf("after one view detached, the other lost the process's lane (mine = %d)", lanes.mine)
	}
	if err := q.Put(ctx, item{0, perView}); err != nil {
		t.Fatalf("Put() after the other view detached = %v", err)
	}
	if it, err := q.Get(ctx); err != nil || it != (item{0, perView}) {
		t.Fatalf("Get() = %v, %v; want %v", it, err, item{0, perView})
	}
}

// TestQueueDetachInterruptsBlockedCalls: Detach of the creating view unmaps
// the segment, so it must first make calls blocked in it (in any view of
// this process) return os.ErrClosed and wait for them to leave; a context
// cancelled at the same moment must not wake anything after the unmap.
// Without that the process dies with "fatal error: fault".
func TestQueueDetachInterruptsBlockedCalls(t *testing.T) {
	get := func(ctx context.Context, q *Queue[item]) error { _, err := q.Get(ctx); return err }
	put := func(ctx context.Context, q *Queue[item]) error { return q.Put(ctx, item{1, 1}) }
	tests := []struct {
		name      string
		full      bool // fill the lane first, so that Put blocks
		otherView bool // block in a second view of the queue, not the creator's
		cancelToo bool // cancel the call's context while Detach runs
		call      func(context.Context, *Queue[item]) error
		sleeper   func(*lanes) *eventWords
	}{
		{"Get on an empty queue", false, false, false, get, func(l *lanes) *eventWords { return &l.l.ev }},
		{"Put on a full lane", true, false, false, put, func(l *lanes) *eventWords { return &l.rings[0].l.space }},
		{"Get in another view of the process", false, true, false, get, func(l *lanes) *eventWords { return &l.l.ev }},
		{"Get whose context is cancelled meanwhile", false, false, true, get, func(l *lanes) *eventWords { return &l.l.ev }},
		{"Put whose context is cancelled meanwhile", true, false, true, put, func(l *lanes) *eventWords { return &l.rings[0].l.space }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 20 {
				q, err := NewQueue[item](&QueueConfig{Producers: 1, Ring: &RingConfig{Capacity: 256}})
				if err != nil {
					t.Fatal(err)
				}
				if tt.full {
					for q.TryPut(item{0, 0}) == nil {
					}
				}
				caller := q
				if tt.otherView {
					b, _ := q.MarshalBinary()
					caller = new(Queue[item])
					if err := caller.UnmarshalBinary(b); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				go func() { errc <- tt.call(ctx, caller) }()
				if i%2 == 0 { // asleep on the futex; odd rounds race the poll
					ev := tt.sleeper(q.st.q)
					waitFor(t, 5*time.Second, "call asleep", func() bool { return ev.waiting() != 0 })
				}
				if tt.cancelToo {
					go cancel()
				}
				if err := q.Detach(); err != nil {
					t.Fatalf("Detach() = %v", err)
				}
				select {
				case err := <-errc:
					if !errors.Is(err, os.ErrClosed) && !(tt.cancelToo && errors.Is(err, context.Canceled)) {
						t.Fatalf("round %d: blocked call returned %v after Detach, want os.ErrClosed", i, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: blocked call still running 5s after Detach", i)
				}
				if err := tt.call(ctx, caller); !errors.Is(err, os.ErrClosed) && !(tt.cancelToo && errors.Is(err, context.Canceled)) {
					t.Fatalf("round %d: call after Detach = %v, want os.ErrClosed", i, err)
				}
				caller.Detach()
				cancel()
			}
		})
	}
}

// TestQueueCorruptLaneSetAside: hostile bytes in one lane's ring are
// reported once, as an error wrapping ErrCorrupt that names the lane and
// its producer, and the consumer keeps serving every message of the other
// lanes.
func TestQueueCorruptLaneSetAside(t *testing.T) {
	const perLane, victim, fakePid = 5, 1, 4242
	tests := []struct {
		name   string
		damage func(r *Ring)
	}{
		{"head misaligned", func(r *Ring) { r.l.head.Add(4) }},
		{"tail more than a ring ahead of head", func(r *Ring) { r.l.tail.Add(8 * r.capacity) }},
		{"record length past the ring", func(r *Ring) {
			binary.LittleEndian.PutUint32(r.data[r.l.head.Load()&r.mask:], 5000)
		}},
		{"record of an unknown kind", func(r *Ring) {
			binary.LittleEndian.PutUint32(r.data[r.l.head.Load()&r.mask+4:], 77)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := mustQueue(t, &QueueConfig{Producers: 3, Ring: &RingConfig{Capacity: 1024}})
			ctx := context.Background()
			l := q.st.q
			for i := range int64(perLane) {
				if err := q.Put(ctx, item{0, i}); err != nil { // this process's lane: 0
					t.Fatal(err)
				}
				for lane := 1; lane < 3; lane++ { // as other producers would
					b, err := q.codec.Append(nil, item{int32(lane), i})
					if err != nil {
						t.Fatal(err)
					}
					if err := l.rings[lane].TryPut(b); err != nil {
						t.Fatal(err)
					}
				}
			}
			l.owners[victim].owner.Store(fakePid)
			tt.damage(l.rings[victim])

			next := make(map[int32]int64)
			var corrupt []error
			for range 100 {
				it, err := q.TryGet()
				if errors.Is(err, ErrEmpty) {
					break
				}
				if errors.Is(err, ErrCorrupt) {
					corrupt = append(corrupt, err)
					continue
				}
				if err != nil {
					t.Fatalf("TryGet() = %v with %v delivered", err, next)
				}
				checkOrder(t, next, it)
			}
			if len(corrupt) != 1 {
				t.Fatalf("got %d ErrCorrupt reports (first: %v), want exactly 1", len(corrupt), errors.Join(corrupt[:min(1, len(corrupt))]...))
			}
			if msg := corrupt[0].Error(); !strings.Contains(msg, "lane 1") || !strings.Contains(msg, "4242") {
				t.Errorf("error %q does not name lane %d and producer pid %d", msg, victim, fakePid)
			}
			for _, lane := range []int32{0, 2} {
				if next[lane] != perLane {
					t.Errorf("healthy lane %d delivered %d messages, want %d", lane, next[lane], perLane)
				}
			}
			if err := q.Put(ctx, item{0, perLane}); err != nil {
				t.Fatal(err)
			}
			if it, err := q.Get(ctx); err != nil || it != (item{0, perLane}) {
				t.Errorf("Get() after the report = %v, %v; want %v", it, err, item{0, perLane})
			}
		})
	}
}

// TestQueueLen: Len counts committed, untaken messages across lanes.
func TestQueueLen(t *testing.T) {
	q, _ := mustQueue(t, &QueueConfig{Producers: 2, Ring: &RingConfig{Capacity: 1024}})
	ctx := context.Background()
	steps := []struct {
		name       string
		puts, gets int
		want       int
	}{
		{"empty", 0, 0, 0},
		{"after five puts", 5, 0, 5},
		{"after two gets", 0, 2, 3},
		{"after draining", 0, 3, 0},
	}
	seq := int64(0)
	for _, s := range steps {
		for range s.puts {
			if err := q.Put(ctx, item{0, seq}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		for range s.gets {
			if _, err := q.Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := q.Len(); got != s.want {
			t.Errorf("%s: Len() = %d, want %d", s.name, got, s.want)
		}
	}
	l := q.st.q
	l.owners[1].puts.Store(1 << 40) // hostile count: clamped to what a ring holds
	if got, max := q.Len(), int(l.rings[1].capacity/recHdr); got != max {
		t.Errorf("Len() with a hostile lane count = %d, want it clamped to %d", got, max)
	}
	q.Detach()
	if got := q.Len(); got != 0 {
		t.Errorf("Len() after Detach = %d, want 0", got)
	}
}
