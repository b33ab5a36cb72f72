package ipc

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestRingWakeReachesEachSide: with the peer dead, Wake makes a Put asleep
// on a full ring and a Get asleep on an empty ring return ErrPeerDied at
// once, not at the end of their 100 ms sleep slice. Each side has its own
// re-check flag; a Wake that reached only one side fails the other case.
func TestRingWakeReachesEachSide(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		full    bool
		call    func(*Ring) error
		sleeper func(*Ring) *eventWords
	}{
		{"Put on a full ring", true,
			func(r *Ring) error { return r.Put(ctx, []byte("x")) },
			func(r *Ring) *eventWords { return &r.l.space }},
		{"Get on an empty ring", false,
			func(r *Ring) error { _, err := r.Get(ctx, nil); return err },
			func(r *Ring) *eventWords { return &r.l.data }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRing(t, &RingConfig{Capacity: 256})
			r.SetSpin(0)
			if tt.full {
				for r.TryPut(make([]byte, 32)) == nil || r.TryPut(nil) == nil {
				}
			}
			// This pid with another start time: a peer that has died.
			r.peer.setID(peerFromWord(selfWord() ^ 1))
			errc := make(chan error, 1)
			go func() { errc <- tt.call(r) }()
			ev := tt.sleeper(r)
			waitFor(t, 5*time.Second, "call asleep", func() bool { return ev.waiting() != 0 })
			time.Sleep(5 * time.Millisecond)
			start := time.Now()
			r.Wake()
			select {
			case err := <-errc:
				if !errors.Is(err, ErrPeerDied) {
					t.Errorf("call = %v, want ErrPeerDied", err)
				}
				if d := time.Since(start); d > 50*time.Millisecond {
					t.Errorf("Wake reached the sleeper after %v, want well under the 100 ms slice", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("call still blocked 5s after Wake with a dead peer")
			}
		})
	}
}

// TestPeerWord: a packed identity names the same process, and one whose
// start time differs (a recycled pid) reads as dead.
func TestPeerWord(t *testing.T) {
	w := selfWord()
	id := peerFromWord(w)
	if id == nil || id.pid != os.Getpid() {
		t.Fatalf("peerFromWord(selfWord()) = %+v, want pid %d", id, os.Getpid())
	}
	var p peerRef
	p.setID(id)
	if p.dead() {
		t.Error("dead() = true for this process")
	}
	p.setID(peerFromWord(w ^ 1))
	if !p.dead() {
		t.Error("dead() = false for this pid with another start time")
	}
	p.setID(peerFromWord(0))
	if p.dead() {
		t.Error("dead() = true with no peer")
	}
}
