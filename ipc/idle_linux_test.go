//go:build linux

package ipc

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestIdleConsumerSleeps: a Get on an empty ring stops polling within
// 100 µs (plus scheduling noise) and then burns (almost) no CPU.
func TestIdleConsumerSleeps(t *testing.T) {
	r := mustRing(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := r.Get(ctx, nil)
		errc <- err
	}()
	for r.l.data.waiters.Load() == 0 {
		if time.Since(start) > time.Second {
			t.Fatal("consumer still polling after 1s")
		}
		time.Sleep(10 * time.Microsecond)
	}
	asleep := time.Since(start)
	// Goroutine start-up and this poll loop add to the 50 µs spin; a loaded
	// machine adds more, so only a gross overrun fails.
	if asleep > 2*time.Millisecond {
		t.Errorf("consumer went to sleep after %v, want about 50 µs", asleep)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(300 * time.Millisecond)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime)-syscall.TimevalToNsec(before.Utime)) +
		time.Duration(syscall.TimevalToNsec(after.Stime)-syscall.TimevalToNsec(before.Stime))
	if cpu > 3*time.Millisecond { // 1% of 300 ms
		t.Errorf("idle consumer used %v of CPU in 300 ms, want under 1%%", cpu)
	}
	cancel()
	<-errc
	t.Logf("asleep after %v; %v CPU in 300 ms idle", asleep, cpu)
}
