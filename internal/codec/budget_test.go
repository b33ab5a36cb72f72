package codec

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// big4k is an element type whose Go size dwarfs its smallest encoding (an
// empty map, one byte).
type big4k struct{ A [4096]byte }

// binarySlice has UnmarshalBinary, which the CBOR library calls for byte
// strings only: an array still decodes by kind.
type binarySlice []big4k

func (b *binarySlice) UnmarshalBinary([]byte) error  { return nil }
func (b binarySlice) MarshalBinary() ([]byte, error) { return nil, nil }

// forgedArray returns the CBOR head of an array of n elements followed by n
// empty maps: n+5 bytes that decode into n zero structs.
func forgedArray(n int) []byte {
	b := []byte{0x9a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(b, bytes.Repeat([]byte{0xa0}, n)...)
}

// allocDuring returns the bytes allocated while f runs (the TotalAlloc
// growth of runtime.MemStats, read through runtime/metrics, which does not
// stop the world: ReadMemStats made fuzzing crawl).
func allocDuring(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	f()
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before
}

// TestDecodeForgedCount is the message a buggy worker could send: 8 MB that
// describe 8 Mi structs of 4 KiB, 32 GiB the decoder used to allocate up
// front (fatal error: runtime: out of memory). It must be refused quickly,
// having allocated next to nothing.
func TestDecodeForgedCount(t *testing.T) {
	msg := forgedArray(8 << 20)
	var v []big4k
	var err error
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = For[[]big4k]().Decode(msg, &v)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	if !errors.Is(err, ErrOverBudget) {
		t.Fatalf("Decode(forged 8 Mi × 4 KiB) = %v, want ErrOverBudget", err)
	}
	if alloc > 1<<20 {
		t.Errorf("Decode(forged) allocated %d bytes, want under 1 MiB", alloc)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Decode(forged) took %v, want well under 5s", elapsed)
	}
	if v != nil {
		t.Errorf("Decode(forged) wrote %d elements, want none", len(v))
	}
}

// TestDecodeOverBudget: every way for a short message to describe a lot of
// memory (slices, maps, pointers, nested, indefinite lengths, fields found
// by case-insensitive or embedded names) is refused.
func TestDecodeOverBudget(t *testing.T) {
	const n = 1 << 16 // 64 Ki × 4 KiB = 256 MiB from 64 KiB
	type nested struct{ Inner []big4k }
	type Embedded struct{ Items []big4k }
	type withEmbedded struct {
		*Embedded
		Name string
	}
	pairs := func(key []byte, val []byte, count int) []byte {
		b := []byte{0xba, byte(count >> 24), byte(count >> 16), byte(count >> 8), byte(count)}
		for range count {
			b = append(b, key...)
			b = append(b, val...)
		}
		return b
	}
	indef := append([]byte{0x9f}, bytes.Repeat([]byte{0xa0}, n)...)
	indef = append(indef, 0xff)
	// {"inner": [{}, {}, ...]} with the key in another case.
	inner := append([]byte{0xa1, 0x65, 'i', 'n', 'N', 'e', 'R'}, forgedArray(n)...)
	embedded := append([]byte{0xa1, 0x65, 'I', 't', 'e', 'm', 's'}, forgedArray(n)...)
	tests := []struct {
		name   string
		decode func() error
	}{
		{"slice of big structs", func() error { var v []big4k; return For[[]big4k]().Decode(forgedArray(n), &v) }},
		{"slice of pointers", func() error { var v []*big4k; return For[[]*big4k]().Decode(forgedArray(n), &v) }},
		{"indefinite-length slice", func() error { var v []big4k; return For[[]big4k]().Decode(indef, &v) }},
		{"map values", func() error {
			var v map[int]big4k
			return For[map[int]big4k]().Decode(pairs([]byte{0x00}, []byte{0xa0}, n), &v)
		}},
		{"slice in a struct field, key case folded", func() error { var v nested; return For[nested]().Decode(inner, &v) }},
		{"field promoted from an embedded pointer", func() error {
			var v withEmbedded
			return For[withEmbedded]().Decode(embedded, &v)
		}},
		{"slice under a tag", func() error {
			var v []big4k
			return For[[]big4k]().Decode(append([]byte{0xd9, 0xd9, 0xf7}, forgedArray(n)...), &v)
		}},
		{"slice type with UnmarshalBinary, decoded by kind", func() error {
			var v binarySlice
			return For[binarySlice]().Decode(forgedArray(n), &v)
		}},
		{"toarray struct field", func() error {
			type row struct {
				_     struct{} `cbor:",toarray"`
				ID    int64
				Items []big4k
			}
			var v row
			return For[row]().Decode(append([]byte{0x82, 0x00}, forgedArray(n)...), &v)
		}},
		{"type mismatch charged at worst", func() error {
			var v struct{ X []big4k }
			return For[struct{ X []big4k }]().Decode(forgedArray(n), &v)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := allocDuring(func() { err = tt.decode() })
			if !errors.Is(err, ErrOverBudget) {
				t.Fatalf("Decode() = %v, want ErrOverBudget", err)
			}
			if alloc > 8<<20 {
				t.Errorf("Decode() allocated %d bytes before refusing, want under 8 MiB", alloc)
			}
		})
	}
}

// TestBudgetFitsLegitimate encodes the zero-heavy values that expand most
// and checks that they decode, and that their expansion (walk estimate over
// message length) stays under DecodeBudgetRatio: the table in budget.go.
func TestBudgetFitsLegitimate(t *testing.T) {
	const n = 1 << 17
	check := func(t *testing.T, name string, msgLen int, est, alloc uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: Decode() = %v, want nil", name, err)
		}
		ratio := float64(est) / float64(msgLen)
		t.Logf("%8d bytes in, estimate %9d bytes (ratio %.1f), allocated %9d (ratio %.1f)",
			msgLen, est, ratio, alloc, float64(alloc)/float64(msgLen))
		if ratio > DecodeBudgetRatio {
			t.Errorf("%s: ratio %.1f over DecodeBudgetRatio %d", name, ratio, DecodeBudgetRatio)
		}
	}
	t.Run("[]float64 of zeros", func(t *testing.T) { legit(t, check, make([]float64, n)) })
	t.Run("[]int64 of zeros", func(t *testing.T) { legit(t, check, make([]int64, n)) })
	t.Run("[][512]int64 of zeros", func(t *testing.T) { legit(t, check, make([][512]int64, n/64)) })
	t.Run("[]string of empty strings", func(t *testing.T) { legit(t, check, make([]string, n)) })
	t.Run("[][]int64 of empty slices", func(t *testing.T) {
		v := make([][]int64, n)
		for i := range v {
			v[i] = []int64{}
		}
		legit(t, check, v)
	})
	t.Run("[]any of nil", func(t *testing.T) { legit(t, check, make([]any, n)) })
	t.Run("[]any of empty arrays", func(t *testing.T) {
		v := make([]any, n)
		for i := range v {
			v[i] = []any{}
		}
		legit(t, check, v)
	})
	t.Run("map[int]map[int]int of {}", func(t *testing.T) {
		v := make(map[int]map[int]int, n/4)
		for i := range n / 4 {
			v[i] = map[int]int{}
		}
		legit(t, check, v)
	})
	t.Run("[]toarray struct of zeros", func(t *testing.T) {
		type row struct {
			_    struct{} `cbor:",toarray"`
			ID   int64
			Vals []int64
		}
		v := make([]row, 64)
		for i := range v {
			v[i].Vals = make([]int64, 1024)
		}
		legit(t, check, v)
	})
	t.Run("[]big4k of zeros", func(t *testing.T) { legit(t, check, make([]big4k, 256)) })
	t.Run("[]*big4k of zeros", func(t *testing.T) {
		v := make([]*big4k, 256)
		for i := range v {
			v[i] = new(big4k)
		}
		legit(t, check, v)
	})
}

func legit[T any](t *testing.T, check func(*testing.T, string, int, uint64, uint64, error), v T) {
	t.Helper()
	c := For[T]()
	msg, err := c.Append(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	est, _ := checkBudget(msg, c.plan().node, ^uint64(0))
	var out T
	alloc := allocDuring(func() { err = c.Decode(msg, &out) })
	check(t, t.Name(), len(msg), est, alloc, err)
}

// FuzzDecodeBudget decodes arbitrary bytes into types whose elements are
// large: whatever the bytes, Decode must return (no panic) having allocated
// no more than a small multiple of the budget of the message.
func FuzzDecodeBudget(f *testing.F) {
	// Reading the allocation counter flushes every P's cache; on a loaded
	// machine, waiting for the other Ps made fuzzing 100 times slower.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	type mixed struct {
		S []big4k
		M map[string]big4k
		P *big4k
		N [][]big4k
		A any
	}
	seed, _ := For[mixed]().Append(nil, mixed{S: make([]big4k, 1), M: map[string]big4k{"k": {}}, N: [][]big4k{{}}, A: []any{1}})
	f.Add(seed)
	f.Add(forgedArray(1 << 10))
	f.Add([]byte{0x9f, 0xa0, 0xa0, 0xff})
	f.Add([]byte{0xa1, 0x61, 's', 0x82, 0xa0, 0xa0})
	f.Add([]byte{0xbf, 0x61, 'm', 0xa1, 0x60, 0xa0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		limit := 4*decodeBudget(len(b)) + 1<<20
		check := func(name string, typ reflect.Type, decode func() error) {
			// What Decode lets through must cost about what the walk
			// estimated: an estimate far below the real allocation is a
			// hole a bigger message could drive through.
			est, werr := checkBudget(b, nodeOf(typ), ^uint64(0))
			var err error
			alloc := allocDuring(func() { err = decode() })
			bound := limit
			if werr == nil && !errors.Is(err, ErrOverBudget) {
				bound = min(bound, 2*est+64<<10)
			}
			// The counter also sees what the fuzzing engine's goroutines
			// allocate meanwhile, and counts small objects when their span
			// is swapped out rather than when they are allocated: a reading
			// over the bound must be confirmed by the least of two more.
			for retry := 0; retry < 2 && alloc > bound; retry++ {
				alloc = min(alloc, allocDuring(func() { err = decode() }))
			}
			if alloc > limit {
				t.Errorf("Decode into %s allocated %d bytes for a %d-byte message, want at most %d", name, alloc, len(b), limit)
			} else if alloc > bound {
				t.Errorf("Decode into %s allocated %d bytes, walk estimated %d (error %v)", name, alloc, est, err)
			}
		}
		check("[]big4k", reflect.TypeFor[[]big4k](), func() error { var v []big4k; return For[[]big4k]().Decode(b, &v) })
		check("[]*big4k", reflect.TypeFor[[]*big4k](), func() error { var v []*big4k; return For[[]*big4k]().Decode(b, &v) })
		check("[][]big4k", reflect.TypeFor[[][]big4k](), func() error { var v [][]big4k; return For[[][]big4k]().Decode(b, &v) })
		check("map[int][]big4k", reflect.TypeFor[map[int][]big4k](), func() error {
			var v map[int][]big4k
			return For[map[int][]big4k]().Decode(b, &v)
		})
		check("mixed", reflect.TypeFor[mixed](), func() error { var v mixed; return For[mixed]().Decode(b, &v) })
		check("[]mixed", reflect.TypeFor[[]mixed](), func() error { var v []mixed; return For[[]mixed]().Decode(b, &v) })
		check("any", reflect.TypeFor[any](), func() error { var v any; return For[any]().Decode(b, &v) })
	})
}
