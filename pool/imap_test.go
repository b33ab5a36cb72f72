package pool

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

// A 10-million-item generator is pulled only as results are consumed: the
// items pulled stay within the in-flight bound of the ones consumed, and
// memory does not grow with the input.
func TestImapLazyInput(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	const total, consume = 10_000_000, 1000
	pulled := 0
	gen := func(yield func(int) bool) {
		for i := range total {
			pulled++
			if !yield(i) {
				return
			}
		}
	}
	bound := 4 * imapChunk * len(p.core.slots)
	for _, ordered := range []bool{true, false} {
		pulled = 0
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got := 0
		check := func(v, want int, err error) bool {
			if err != nil || (ordered && v != want) {
				t.Fatalf("ordered=%v: result %d = %d, %v; want %d", ordered, got, v, err, want)
			}
			if pulled > got+bound+1 {
				t.Fatalf("ordered=%v: %d items pulled after %d consumed, want at most %d more", ordered, pulled, got, bound)
			}
			got++
			return got < consume
		}
		if ordered {
			for v, err := range Imap(context.Background(), p, cube, gen) {
				if !check(v, got*got*got, err) {
					break
				}
			}
		} else {
			for r, err := range ImapUnordered(context.Background(), p, cube, gen) {
				if !check(r.Value, r.Value, err) {
					break
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got != consume || pulled > consume+bound {
			t.Fatalf("ordered=%v: consumed %d, pulled %d; want %d consumed and at most %d pulled", ordered, got, pulled, consume, consume+bound)
		}
		if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
			t.Fatalf("ordered=%v: heap grew by %d KiB over the iteration, want it small", ordered, grew>>10)
		}
		t.Logf("ordered=%v: pulled %d of %d items for %d results", ordered, pulled, total, got)
	}
}

// An item's error names its index in the whole input, not in its batch.
func TestImapErrorIndex(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	const n = 500
	gen := func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
	i := 0
	for v, err := range Imap(context.Background(), p, failOdd, gen) {
		var te *TaskError
		switch {
		case i%2 == 0 && (err != nil || v != i):
			t.Fatalf("item %d = %d, %v; want %d", i, v, err, i)
		case i%2 == 1 && (!errors.As(err, &te) || te.Index != i):
			t.Fatalf("item %d = %v, want a *TaskError with Index %d", i, err, i)
		}
		i++
	}
	if i != n {
		t.Fatalf("Imap yielded %d items, want %d", i, n)
	}
}
