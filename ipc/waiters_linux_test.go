//go:build linux

package ipc

import (
	"context"
	"testing"
	"time"
)

// waitFor polls cond every millisecond and fails the test after d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			tb.Fatalf("%s: not within %v", what, d)
		}
	}
}

// TestWaitersHealAfterKilledSleeper: a process SIGKILLed while asleep in
// Semaphore.Wait leaves its announcement in the event count. The next Post
// may pay one FUTEX_WAKE that finds nobody; later ones must cost a load
// again, and a live waiter that comes afterwards must still be woken by the
// first Post (not by the end of its 100 ms sleep slice).
func TestWaitersHealAfterKilledSleeper(t *testing.T) {
	seg := mustSegment(t, SemaphoreSize)
	s, err := NewSemaphore(seg.Bytes()[:SemaphoreSize], 0)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, "sem-wait", seg)
	waitFor(t, 10*time.Second, "child announced its wait", func() bool { return s.l.ev.waiting() != 0 })
	time.Sleep(20 * time.Millisecond) // past its poll, into FUTEX_WAIT
	child.Process.Kill()
	child.Wait()

	const posts = 100
	before := futexWakeCalls()
	for range posts {
		s.Post()
	}
	if n := futexWakeCalls() - before; n > 1 {
		t.Errorf("%d posts after the sleeper died made %d FUTEX_WAKE calls, want at most 1", posts, n)
	}
	for s.TryWait() {
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Wait(ctx) }()
	waitFor(t, 5*time.Second, "live waiter announced its wait", func() bool { return s.l.ev.waiting() != 0 })
	time.Sleep(5 * time.Millisecond)
	before = futexWakeCalls()
	start := time.Now()
	s.Post()
	if err := <-errc; err != nil {
		t.Fatalf("Wait() = %v, want nil", err)
	}
	if d := time.Since(start); d > 90*time.Millisecond {
		t.Errorf("Wait returned %v after Post: the wake was lost and the sleep slice recovered it", d)
	}
	if futexWakeCalls() == before {
		t.Error("Post made no FUTEX_WAKE call with a live waiter asleep")
	}
}
