package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// FuzzAttachLanes flips bytes of a queue's shared memory (header, lane
// words, ring headers and records) and attaches to it as another process
// would. attachLanes must fail with ErrCorrupt or ErrLayout or succeed;
// on success a few operations must return documented results, never panic
// or reach outside the memory.
func FuzzAttachLanes(f *testing.F) {
	// Each patch is 3 bytes: a little-endian offset (modulo the size) and a
	// byte XORed there.
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0xff})                         // magic
	f.Add([]byte{8, 0, 0x7f})                         // lane count
	f.Add([]byte{12, 0, 0x40})                        // lane stride
	f.Add([]byte{0x40, 0x01, 0x08, 0x48, 0x01, 0x03}) // a ring's positions
	f.Add([]byte{0x00, 0x02, 0x33, 0x04, 0x02, 0x01}) // a record header
	f.Fuzz(func(t *testing.T, patch []byte) {
		cfg := &RingConfig{Capacity: 256, MaxMessage: 64}
		size := lanesSize(2, cfg)
		mem := alignedMem(size)
		q, err := newLanes(mem, 2, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, n := range []int{0, 5, 40, 64} {
			if err := q.put(ctx, make([]byte, n), false); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i+2 < len(patch); i += 3 {
			mem[int(binary.LittleEndian.Uint16(patch[i:]))%size] ^= patch[i+2]
		}
		a, err := attachLanes(mem)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLayout) {
				t.Fatalf("attachLanes() = %v, want ErrCorrupt or ErrLayout", err)
			}
			return
		}
		maxMsg := 0
		for _, r := range a.rings {
			maxMsg = max(maxMsg, r.maxMsg)
		}
		for range 6 {
			out, err := a.tryGet(nil)
			switch {
			case err == nil:
				if len(out) > maxMsg {
					t.Fatalf("tryGet() returned %d bytes, over MaxMessage", len(out))
				}
			case errors.Is(err, ErrEmpty), errors.Is(err, ErrCorrupt), errors.Is(err, os.ErrClosed):
			default:
				t.Fatalf("tryGet() = %v", err)
			}
			err = a.put(ctx, []byte("fuzz"), false)
			if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrCorrupt) &&
				!errors.Is(err, ErrNoLane) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("put() = %v", err)
			}
			if n, max := a.len(), 2*int(256/recHdr); n < 0 || n > max {
				t.Fatalf("len() = %d, want 0..%d", n, max)
			}
		}
		a.release()
	})
}
