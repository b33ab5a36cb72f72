package ipc

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPoller(t *testing.T) {
	var p Poller
	var flag atomic.Bool
	go func() {
		time.Sleep(time.Microsecond)
		flag.Store(true)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !p.Poll(flag.Load) {
		if time.Now().After(deadline) {
			t.Fatal("Poll never saw the flag set by another goroutine")
		}
	}
	// A condition that never holds: each Poll gives up within its budget
	// (defaultSpin, plus scheduling slack), and the budget shrinks.
	start := time.Now()
	for range 20 {
		if p.Poll(func() bool { return false }) {
			t.Fatal("Poll reported a false condition true")
		}
	}
	if d := time.Since(start); d > 20*defaultSpin+100*time.Millisecond {
		t.Fatalf("20 failing polls took %v; each should stop after about %v", d, defaultSpin)
	}
	if p.as.budget > defaultSpin/2 {
		t.Fatalf("budget %v after 20 failed polls; want it halved toward %v", p.as.budget, minSpin)
	}
}
