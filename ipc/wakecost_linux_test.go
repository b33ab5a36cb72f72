//go:build linux

package ipc

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkWakeCost measures what the pool's design works around: a
// ping-pong between two threads pinned to CPUs, each either polling the
// shared word or sleeping on it with FUTEX_WAIT until the other's
// FUTEX_WAKE. "sleep/apart" is two wake-ups of a thread whose CPU went
// idle per op (on a VM a hypervisor round trip each), "sleep/together"
// the same with both threads on one CPU (a context switch), "poll/apart"
// the cache-line transfer alone. wake-ns is what FUTEX_WAKE itself costs
// the waker when the other side sleeps.
//
//	go test -run '^$' -bench WakeCost -count 5 ./ipc
func BenchmarkWakeCost(b *testing.B) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		b.Skip(err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		b.Skip("needs two CPUs")
	}
	b.Run("poll/apart", func(b *testing.B) { benchPingPong(b, cpus[0], cpus[1], false) })
	b.Run("sleep/apart", func(b *testing.B) { benchPingPong(b, cpus[0], cpus[1], true) })
	b.Run("sleep/together", func(b *testing.B) { benchPingPong(b, cpus[0], cpus[0], true) })
}

func benchPingPong(b *testing.B, here, there int, sleep bool) {
	var ping, pong atomic.Uint32
	const stop = uint32(1 << 31)
	await := func(w *atomic.Uint32, want uint32) {
		for v := w.Load(); v != want && v != stop; v = w.Load() {
			if sleep {
				futexWait(w, v, -1)
			}
		}
	}
	var wakeNs atomic.Int64
	post := func(w *atomic.Uint32, v uint32) {
		w.Store(v)
		if sleep {
			t := time.Now()
			futexWake(w, 1)
			wakeNs.Add(int64(time.Since(t)))
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Locked and never unlocked: the thread ends with the goroutine,
		// taking its one-CPU mask along.
		runtime.LockOSThread()
		pin(b, there)
		for i := uint32(1); ; i++ {
			await(&ping, i)
			if ping.Load() == stop {
				return
			}
			post(&pong, i)
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer pin(b, here)()
	var d []time.Duration
	i := uint32(0)
	for b.Loop() {
		i++
		start := time.Now()
		post(&ping, i)
		await(&pong, i)
		d = append(d, time.Since(start))
	}
	ping.Store(stop)
	futexWake(&ping, 1)
	<-done
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
	if sleep {
		b.ReportMetric(float64(wakeNs.Load())/float64(2*len(d)), "wake-ns")
	}
}

// pin binds the calling thread (locked by the caller) to cpu and returns
// what restores its previous mask.
func pin(b *testing.B, cpu int) (restore func()) {
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		b.Fatal(err)
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		b.Fatal(fmt.Errorf("pin to cpu %d: %w", cpu, err))
	}
	return func() { unix.SchedSetaffinity(0, &old) }
}
