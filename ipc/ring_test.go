package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// alignedMem returns n zeroed bytes starting on a 64-byte boundary.
func alignedMem(n int) []byte {
	b := make([]byte, n+lineSize)
	for i := range lineSize {
		if aligned(b[i:]) {
			return b[i : i+n : i+n]
		}
	}
	panic("no aligned offset")
}

func mustRing(tb testing.TB, cfg *RingConfig) *Ring {
	tb.Helper()
	r, err := NewRing(alignedMem(RingSize(cfg)), cfg)
	if err != nil {
		tb.Fatalf("NewRing: %v", err)
	}
	return r
}

func TestRingConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *RingConfig
		size    int
		wantErr bool
	}{
		{"nil means defaults", nil, ringHeaderSize + defaultRingCapacity, false},
		{"capacity rounds up to a power of two", &RingConfig{Capacity: 1000}, ringHeaderSize + 1024, false},
		{"tiny capacity is raised to the minimum", &RingConfig{Capacity: 1}, ringHeaderSize + minRingCapacity, false},
		{"max message of half the ring is refused", &RingConfig{Capacity: 1024, MaxMessage: 512}, -1, true},
		{"max message of half minus a header is fine", &RingConfig{Capacity: 1024, MaxMessage: 504}, ringHeaderSize + 1024, false},
		{"negative capacity is refused", &RingConfig{Capacity: -1}, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RingSize(tt.cfg); got != tt.size {
				t.Errorf("RingSize() = %d, want %d", got, tt.size)
			}
			_, err := NewRing(alignedMem(max(tt.size, 4096)), tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Errorf("NewRing() error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestRingLayout(t *testing.T) {
	if got := sizeOf[ringLayout](); got != ringHeaderSize {
		t.Errorf("sizeof(ringLayout) = %d, want %d", got, ringHeaderSize)
	}
	var l ringLayout
	base := uintptrOf(&l)
	if off := uintptrOf(&l.tail) - base; off != lineSize {
		t.Errorf("tail offset = %d, want %d", off, lineSize)
	}
	if off := uintptrOf(&l.head) - base; off != 2*lineSize {
		t.Errorf("head offset = %d, want %d", off, 2*lineSize)
	}
	if got := sizeOf[semLayout](); got != SemaphoreSize {
		t.Errorf("sizeof(semLayout) = %d, want %d", got, SemaphoreSize)
	}
	if got := sizeOf[notifierLayout](); got != NotifierSize {
		t.Errorf("sizeof(notifierLayout) = %d, want %d", got, NotifierSize)
	}
}

func TestRingMisaligned(t *testing.T) {
	mem := alignedMem(RingSize(nil) + 8)
	if _, err := NewRing(mem[8:], nil); !errors.Is(err, ErrLayout) {
		t.Errorf("NewRing(misaligned) = %v, want ErrLayout", err)
	}
	if _, err := NewRing(mem[:100], nil); !errors.Is(err, ErrLayout) {
		t.Errorf("NewRing(short) = %v, want ErrLayout", err)
	}
}

func TestRingPutGet(t *testing.T) {
	r := mustRing(t, &RingConfig{Capacity: 1024})
	ctx := context.Background()
	var buf []byte
	// Enough rounds to wrap many times with mixed sizes, incl. empty messages.
	for i := range 2000 {
		msg := bytes.Repeat([]byte{byte(i)}, i%(r.MaxMessage()+1))
		if err := r.Put(ctx, msg); err != nil {
			t.Fatalf("Put(%d bytes) = %v", len(msg), err)
		}
		got, err := r.Get(ctx, buf)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Get() = %d bytes, %v; want %d bytes", len(got), err, len(msg))
		}
		buf = got
	}
}

func TestRingFullEmptyTooLarge(t *testing.T) {
	r := mustRing(t, &RingConfig{Capacity: 256, MaxMessage: 64})
	if _, err := r.TryGet(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("TryGet(empty) = %v, want ErrEmpty", err)
	}
	if err := r.TryPut(make([]byte, 65)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("TryPut(65 bytes) = %v, want ErrTooLarge", err)
	}
	n := 0
	for r.TryPut(make([]byte, 56)) == nil { // 64-byte records
		n++
	}
	if n != 4 {
		t.Errorf("ring of 256 bytes took %d 64-byte records, want 4", n)
	}
	if err := r.TryPut(nil); !errors.Is(err, ErrFull) {
		t.Errorf("TryPut(full) = %v, want ErrFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := r.Put(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put(full, 20ms) = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Put(full, 20ms) took %v", d)
	}
}

func TestRingClose(t *testing.T) {
	r := mustRing(t, &RingConfig{Capacity: 1024})
	ctx := context.Background()
	for i := range 3 {
		if err := r.Put(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	r.Close() // idempotent
	if err := r.Put(ctx, []byte("late")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Put after Close = %v, want os.ErrClosed", err)
	}
	for i := range 3 {
		got, err := r.Get(ctx, nil)
		if err != nil || len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("Get() = %v, %v; want [%d]", got, err, i)
		}
	}
	if _, err := r.Get(ctx, nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Get after drain = %v, want os.ErrClosed", err)
	}
	if _, err := r.TryGet(nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("TryGet after drain = %v, want os.ErrClosed", err)
	}
}

func TestRingCloseWakesSleepers(t *testing.T) {
	r := mustRing(t, nil)
	r.SetSpin(0)
	errc := make(chan error, 1)
	go func() {
		_, err := r.Get(context.Background(), nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it reach the futex
	start := time.Now()
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Get() = %v, want os.ErrClosed", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("Close woke the sleeper after %v, want well under the 100 ms slice", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked 5s after Close")
	}
}

func TestRingCancelWakesSleeper(t *testing.T) {
	r := mustRing(t, nil)
	r.SetSpin(0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Get(ctx, nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Get() = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("cancel woke the sleeper after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked 5s after cancel")
	}
}

func TestRingAttachHostile(t *testing.T) {
	cfg := &RingConfig{Capacity: 1024}
	corrupt := []struct {
		name string
		off  int
		val  uint32
		want error
	}{
		{"bad magic", 0, 0xdeadbeef, ErrCorrupt},
		{"bad version", 4, 99, ErrCorrupt},
		{"capacity not a power of two", 8, 1000, ErrCorrupt},
		{"capacity larger than the memory", 8, 1 << 20, ErrLayout},
		{"mask disagrees with capacity", 12, 511, ErrCorrupt},
		{"max message too large", 16, 1024, ErrCorrupt},
		{"tail beyond head plus capacity", lineSize, 4096, ErrCorrupt},
	}
	for _, tt := range corrupt {
		t.Run(tt.name, func(t *testing.T) {
			mem := alignedMem(RingSize(cfg))
			if _, err := NewRing(mem, cfg); err != nil {
				t.Fatal(err)
			}
			if tt.name == "capacity larger than the memory" {
				binary.LittleEndian.PutUint32(mem[12:], 1<<20-1)
			}
			binary.LittleEndian.PutUint32(mem[tt.off:], tt.val)
			if _, err := AttachRing(mem); !errors.Is(err, tt.want) {
				t.Errorf("AttachRing() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRingCorruptRecord(t *testing.T) {
	r := mustRing(t, &RingConfig{Capacity: 1024})
	if err := r.TryPut([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(r.data[0:], 5000) // length past the ring
	if _, err := r.TryGet(nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("TryGet(corrupt length) = %v, want ErrCorrupt", err)
	}
}

func TestRingAllocs(t *testing.T) {
	r := mustRing(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg := make([]byte, 1000)
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := r.Put(ctx, msg); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = r.Get(ctx, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Put+Get allocated %v times per message, want 0", allocs)
	}
}

// TestRingConcurrent streams messages of varying sizes between goroutines,
// through every wait path (tiny ring, no spin half the time).
func TestRingConcurrent(t *testing.T) {
	for _, spin := range []time.Duration{0, defaultSpin} {
		t.Run(fmt.Sprintf("spin=%v", spin), func(t *testing.T) {
			r := mustRing(t, &RingConfig{Capacity: 512, MaxMessage: 200})
			r.SetSpin(spin)
			const n = 20000
			ctx := context.Background()
			var wg sync.WaitGroup
			wg.Go(func() {
				msg := make([]byte, 200)
				for i := range n {
					m := msg[:i%201]
					for j := range m {
						m[j] = byte(i + j)
					}
					if err := r.Put(ctx, m); err != nil {
						t.Errorf("Put(%d) = %v", i, err)
						return
					}
				}
				r.Close()
			})
			var buf []byte
			for i := 0; ; i++ {
				got, err := r.Get(ctx, buf)
				if errors.Is(err, os.ErrClosed) {
					if i != n {
						t.Errorf("got %d messages before ErrClosed, want %d", i, n)
					}
					break
				}
				if err != nil {
					t.Fatalf("Get(%d) = %v", i, err)
				}
				if len(got) != i%201 {
					t.Fatalf("message %d has %d bytes, want %d", i, len(got), i%201)
				}
				for j, c := range got {
					if c != byte(i+j) {
						t.Fatalf("message %d byte %d = %d, want %d", i, j, c, byte(i+j))
					}
				}
				buf = got
			}
			wg.Wait()
		})
	}
}

func FuzzRing(f *testing.F) {
	f.Add([]byte{0, 10, 1, 0, 200, 1, 1, 0, 255})
	f.Add([]byte{0, 100, 0, 100, 0, 100, 1, 1, 1, 0, 7})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := &RingConfig{Capacity: 256, MaxMessage: 100}
		mem := alignedMem(RingSize(cfg))
		r, err := NewRing(mem, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var model [][]byte
		used := 0 // bytes the model thinks are occupied, pads excluded
		seq := byte(0)
		for i := 0; i+1 < len(ops); i += 2 {
			switch ops[i] % 3 {
			case 0: // put a message of ops[i+1] bytes
				n := int(ops[i+1])
				msg := bytes.Repeat([]byte{seq}, n)
				seq++
				err := r.TryPut(msg)
				switch {
				case n > 100:
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("TryPut(%d) = %v, want ErrTooLarge", n, err)
					}
				case err == nil:
					model = append(model, msg)
					used += recHdr + (n+7)&^7
				case errors.Is(err, ErrFull):
					// Full is legal only if the record plus a wrap pad (each
					// under 112 bytes) and one outstanding pad could exceed
					// the free space; an empty ring takes any legal message.
					rec := recHdr + (n+7)&^7
					if used == 0 || used+112+2*rec <= 256 {
						t.Fatalf("TryPut(%d) = ErrFull with only %d bytes used", n, used)
					}
				default:
					t.Fatalf("TryPut(%d) = %v", n, err)
				}
			case 1: // get
				got, err := r.TryGet(nil)
				if len(model) == 0 {
					if !errors.Is(err, ErrEmpty) {
						t.Fatalf("TryGet(empty) = %v, want ErrEmpty", err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, model[0]) {
					t.Fatalf("TryGet() = %v, %v; want %v", got, err, model[0])
				}
				used -= recHdr + (len(model[0])+7)&^7
				model = model[1:]
			case 2: // re-attach a fresh view, as another process would
				r2, err := AttachRing(mem)
				if err != nil {
					t.Fatalf("AttachRing() = %v", err)
				}
				r = r2
			}
		}
	})
}
