//go:build linux

package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var benchSizes = []int{64, 1 << 10, 64 << 10}

// benchRingCfg fits 16 messages of 64 KiB.
var benchRingCfg = &RingConfig{Capacity: 1 << 20, MaxMessage: 64 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// reportRate reports msgs/s and MB/s over elapsed (which includes the
// receiver draining everything, unlike ns/op).
func reportRate(b *testing.B, n, size int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(n)*float64(size)/elapsed.Seconds()/1e6, "MB/s")
}

// BenchmarkOneWay: one process (goroutine) sends, the other receives, at
// 64 B, 1 KiB and 64 KiB: the shared-memory ring between two processes, a
// buffered Go channel between two goroutines, and a Unix-domain stream
// socket between two processes.
func BenchmarkOneWay(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+sizeName(size)+"/via=ring", func(b *testing.B) { benchOneWayRing(b, size) })
		b.Run("size="+sizeName(size)+"/via=chan", func(b *testing.B) { benchOneWayChan(b, size) })
		b.Run("size="+sizeName(size)+"/via=uds", func(b *testing.B) { benchOneWayUDS(b, size) })
	}
}

func benchOneWayRing(b *testing.B, size int) {
	seg := mustSegment(b, 2*RingSize(benchRingCfg))
	a, back, err := twoRings(seg, benchRingCfg)
	if err != nil {
		b.Fatal(err)
	}
	child := startChild(b, "ring-sink", seg, "MPROC_IPC_RINGSIZE="+strconv.Itoa(RingSize(benchRingCfg)))
	a.SetPeer(child.Process.Pid)
	back.SetPeer(child.Process.Pid)
	ctx := context.Background()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	n := 0
	start := time.Now()
	for b.Loop() {
		if err := a.Put(ctx, msg); err != nil {
			b.Fatal(err)
		}
		n++
	}
	a.Close()
	reply, err := back.Get(ctx, nil)
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if want := fmt.Sprintf("%d %d", n, n*size); string(reply) != want {
		b.Fatalf("sink received %q, want %q", reply, want)
	}
	waitChild(b, child)
	reportRate(b, n, size, elapsed)
}

func benchOneWayChan(b *testing.B, size int) {
	ch := make(chan []byte, 1024)
	done := make(chan int)
	go func() {
		total := 0
		for m := range ch {
			total += len(m)
		}
		done <- total
	}()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	n := 0
	start := time.Now()
	for b.Loop() {
		ch <- msg
		n++
	}
	close(ch)
	<-done
	reportRate(b, n, size, time.Since(start))
}

// udsChild starts mode with one end of a socketpair and returns the other.
func udsChild(b *testing.B, mode string, size int) (net.Conn, func()) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "uds"), os.NewFile(uintptr(fds[1]), "uds-child")
	seg := mustSegment(b, 64) // the child harness always attaches one
	cmd := exec0(b, mode, seg, theirs, size)
	theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		b.Fatal(err)
	}
	return c, func() { c.Close(); waitChild(b, cmd) }
}

func benchOneWayUDS(b *testing.B, size int) {
	c, stop := udsChild(b, "uds-sink", size)
	defer stop()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	n := 0
	start := time.Now()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		n++
	}
	c.(*net.UnixConn).CloseWrite()
	var got [8]byte
	if _, err := readFull(c, got[:]); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	if total := binary.LittleEndian.Uint64(got[:]); total != uint64(n*size) {
		b.Fatalf("sink received %d bytes, want %d", total, n*size)
	}
	reportRate(b, n, size, elapsed)
}

// BenchmarkRoundTrip: a 64-byte ping-pong; ns/op is the round-trip time.
// via=ring-spin: the echoing process polls before sleeping (the default);
// via=ring-sleep: it sleeps on the futex at once (SetSpin(0)), so every ping
// wakes it; via=chan: two unbuffered channels between goroutines;
// via=uds: a Unix-domain stream socket to an echoing process.
func BenchmarkRoundTrip(b *testing.B) {
	const size = 64
	// ring-poll: both sides spin on TryGet and never sleep (the pure-spinning
	// reference); ring-spin: Put/Get with the default adaptive wait; ring-sleep:
	// the echo side never polls (SetSpin(0)) and sleeps on the futex every time.
	b.Run("via=ring-poll", func(b *testing.B) { benchRTTRing(b, size, rttPoll) })
	b.Run("via=ring-spin", func(b *testing.B) { benchRTTRing(b, size, rttAdaptive) })
	b.Run("via=ring-sleep", func(b *testing.B) { benchRTTRing(b, size, rttSleep) })
	b.Run("via=chan", func(b *testing.B) {
		ping, pong := make(chan []byte), make(chan []byte)
		go func() {
			for m := range ping {
				pong <- m
			}
		}()
		msg := make([]byte, size)
		for b.Loop() {
			ping <- msg
			<-pong
		}
		close(ping)
	})
	b.Run("via=uds", func(b *testing.B) {
		c, stop := udsChild(b, "uds-echo", size)
		defer stop()
		msg := make([]byte, size)
		for b.Loop() {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := readFull(c, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const (
	rttAdaptive = iota
	rttPoll
	rttSleep
)

func benchRTTRing(b *testing.B, size int, mode int) {
	cfg := &RingConfig{Capacity: 4096}
	seg := mustSegment(b, 2*RingSize(cfg))
	a, back, err := twoRings(seg, cfg)
	if err != nil {
		b.Fatal(err)
	}
	env := []string{"MPROC_IPC_RINGSIZE=" + strconv.Itoa(RingSize(cfg))}
	switch mode {
	case rttSleep:
		env = append(env, "MPROC_IPC_SLEEP=1")
	case rttPoll:
		env = append(env, "MPROC_IPC_POLL=1")
	}
	child := startChild(b, "ring-echo", seg, env...)
	a.SetPeer(child.Process.Pid)
	back.SetPeer(child.Process.Pid)
	ctx := context.Background()
	msg := make([]byte, size)
	buf := make([]byte, 0, size)
	b.ReportAllocs()
	// Each round trip is timed, so that the tail shows: a p99 far above
	// the median while both sides only poll is the host taking a vCPU away,
	// not anything a wait strategy could save.
	took := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		if err := a.Put(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if mode == rttPoll {
			for {
				if buf, err = back.TryGet(buf); !errors.Is(err, ErrEmpty) {
					break
				}
			}
		} else {
			buf, err = back.Get(ctx, buf)
		}
		if err != nil {
			b.Fatal(err)
		}
		if len(took) < cap(took) {
			took = append(took, time.Since(start))
		}
	}
	a.Close()
	waitChild(b, child)
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
}
