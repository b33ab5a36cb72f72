//go:build linux

package ipc

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// timeToSleep starts a Get on an empty ring and returns how long it polled
// before registering as a futex sleeper, plus a cancel that ends the Get.
func timeToSleep(tb testing.TB) (time.Duration, func()) {
	r := mustRing(tb, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	began := make(chan time.Time, 1)
	go func() {
		began <- time.Now() // measure the Get, not the goroutine's start-up
		_, err := r.Get(ctx, nil)
		errc <- err
	}()
	start := <-began
	for r.l.data.waiting() == 0 {
		if time.Since(start) > time.Second {
			tb.Fatal("consumer still polling after 1s")
		}
		runtime.Gosched() // poll without sleeping: a timer sleep is coarser than what it measures
	}
	return time.Since(start), func() { cancel(); <-errc }
}

// TestIdleConsumerSleeps: a Get on an empty ring stops polling and then
// burns (almost) no CPU. How fast it stops is a figure, not a pass/fail
// timing on a shared machine: see BenchmarkIdleConsumer.
func TestIdleConsumerSleeps(t *testing.T) {
	asleep, stop := timeToSleep(t)
	defer stop()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	// A whole second: the process's own background work (GC, the
	// runtime's monitor) is then small beside the 1% allowed.
	const idle = time.Second
	time.Sleep(idle)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime)-syscall.TimevalToNsec(before.Utime)) +
		time.Duration(syscall.TimevalToNsec(after.Stime)-syscall.TimevalToNsec(before.Stime))
	if cpu > idle/100 {
		t.Errorf("idle consumer used %v of CPU in %v, want under 1%%", cpu, idle)
	}
	t.Logf("asleep after %v; %v CPU in %v idle", asleep, cpu, idle)
}

// BenchmarkIdleConsumer reports how long an idle Get polls before it sleeps
// on the futex (the spin budget is 50 µs; the observer's polling adds a little).
func BenchmarkIdleConsumer(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		d, stop := timeToSleep(b)
		stop()
		total += d
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-to-sleep")
}
