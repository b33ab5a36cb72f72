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
	if got := sizeOf[queueLayout](); got != queueHeaderSize {
		t.Errorf("sizeof(queueLayout) = %d, want %d", got, queueHeaderSize)
	}
	var ql queueLayout
	if off := uintptrOf(&ql.consumer) - uintptrOf(&ql); off != 24 {
		t.Errorf("queue consumer offset = %d, want 24", off)
	}
	if off := uintptrOf(&ql.ev) - uintptrOf(&ql); off != lineSize {
		t.Errorf("queue event count offset = %d, want %d", off, lineSize)
	}
	if got := sizeOf[laneLayout](); got != laneHeaderSize {
		t.Errorf("sizeof(laneLayout) = %d, want %d", got, laneHeaderSize)
	}
	var ll laneLayout
	if off := uintptrOf(&ll.gets) - uintptrOf(&ll); off != lineSize {
		t.Errorf("lane consumer count offset = %d, want %d (its own line)", off, lineSize)
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

// TestRingCorruptPositions: tail and head are read from shared memory on
// every Put; impossible values give ErrCorrupt, never a panic or a write
// outside the ring.
func TestRingCorruptPositions(t *testing.T) {
	const capacity = 1024
	tests := []struct {
		name       string
		head, tail uint64
	}{
		{"tail misaligned just before the end", capacity - 8, capacity - 4},
		{"tail misaligned at the start", 0, 4},
		{"tail more than a ring ahead of head", 0, 2 * capacity},
		{"head misaligned", 4, 2 * capacity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRing(t, &RingConfig{Capacity: capacity})
			r.l.head.Store(tt.head)
			r.l.tail.Store(tt.tail)
			if err := r.TryPut([]byte("x")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("TryPut() = %v, want ErrCorrupt", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := r.Put(ctx, []byte("x")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Put() = %v, want ErrCorrupt", err)
			}
		})
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

// FuzzRing checks random operation sequences against a plain slice model.
// Some operations overwrite the shared tail, head or a record header between
// calls, as a buggy or hostile peer could; from then on the model no longer
// holds, and every call must still return a documented result (an error is
// fine) without a panic or an out-of-range access.
func FuzzRing(f *testing.F) {
	f.Add([]byte{0, 10, 1, 0, 200, 1, 1, 0, 255})
	f.Add([]byte{0, 100, 0, 100, 0, 100, 1, 1, 1, 0, 7})
	f.Add([]byte{0, 100, 1, 0, 0, 100, 3, 0x09, 0, 8, 1, 0})  // misaligned tail after a wrap
	f.Add([]byte{0, 40, 0, 40, 3, 0x7b, 1, 0, 2, 0, 1, 0})    // a record header overwritten
	f.Add([]byte{0, 16, 3, 0x86, 0, 16, 1, 0, 3, 0x41, 0, 9}) // head and tail moved
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
		corrupted := false // shared memory was overwritten: the model is void
		for i := 0; i+1 < len(ops); i += 2 {
			v := ops[i+1]
			switch ops[i] % 4 {
			case 0: // put a message of v bytes
				n := int(v)
				msg := bytes.Repeat([]byte{seq}, n)
				seq++
				err := r.TryPut(msg)
				switch {
				case n > 100:
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("TryPut(%d) = %v, want ErrTooLarge", n, err)
					}
				case corrupted:
					if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrCorrupt) {
						t.Fatalf("TryPut(%d) on corrupted memory = %v", n, err)
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
				if corrupted {
					if err != nil && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrCorrupt) {
						t.Fatalf("TryGet() on corrupted memory = %v", err)
					}
					if len(got) > r.MaxMessage() {
						t.Fatalf("TryGet() on corrupted memory returned %d bytes, over MaxMessage", len(got))
					}
					continue
				}
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
				switch {
				case err == nil:
					r = r2
				case !corrupted || !errors.Is(err, ErrCorrupt):
					t.Fatalf("AttachRing() = %v", err)
				}
			case 3: // overwrite shared state; v selects what and by how much
				corrupted = true
				x := uint64(v >> 2)
				switch v % 4 {
				case 0: // tail forward: misaligned, or past head plus capacity
					r.l.tail.Add(x)
				case 1: // tail backward, possibly behind head
					r.l.tail.Add(-x)
				case 2: // head either way
					r.l.head.Add(x - 32)
				case 3: // a byte of a record header (length or kind)
					mem[ringHeaderSize+int(x*8)%256+int(v&0x80)>>5] ^= v | 1
				}
			}
		}
	})
}
