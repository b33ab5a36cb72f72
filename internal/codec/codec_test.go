package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
)

type point struct {
	X, Y float64
	ID   int32
	OK   bool
	_    [3]byte
}

type task struct {
	ID   uint64
	Func uint32
	X    float64
	A, B int64
}

type named struct {
	Name   string
	Values []float64
	Tags   map[string]int
}

// handle stands in for shm.Array and ipc.Queue: a pointer type whose wire
// form is its own MarshalBinary output.
type handle struct {
	id  uint64
	n   int
	ptr *int // never travels: proves the raw path is not used
}

func (h *handle) MarshalBinary() ([]byte, error) {
	b := binary.LittleEndian.AppendUint64(nil, h.id)
	return binary.LittleEndian.AppendUint64(b, uint64(h.n)), nil
}

func (h *handle) UnmarshalBinary(b []byte) error {
	if len(b) != 16 {
		return fmt.Errorf("handle: got %d bytes, want 16", len(b))
	}
	h.id = binary.LittleEndian.Uint64(b)
	h.n = int(binary.LittleEndian.Uint64(b[8:]))
	return nil
}

// podHandle is plain data yet has its own encoding, which must win.
type podHandle struct{ ID uint64 }

func (h podHandle) MarshalBinary() ([]byte, error) { return []byte{'p', byte(h.ID)}, nil }
func (h *podHandle) UnmarshalBinary(b []byte) error {
	if len(b) != 2 || b[0] != 'p' {
		return errors.New("podHandle: bad bytes")
	}
	h.ID = uint64(b[1])
	return nil
}

func roundTrip[T any](t *testing.T, v T) T {
	t.Helper()
	c := For[T]()
	b, err := c.Append([]byte("prefix"), v)
	if err != nil {
		t.Fatalf("Append(%v) error: %v", v, err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("Append clobbered dst: %q", b)
	}
	var got T
	if err := c.Decode(b[len("prefix"):], &got); err != nil {
		t.Fatalf("Decode error: %v", err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	t.Run("raw struct with bool and padding", func(t *testing.T) {
		v := point{X: 1.5, Y: -2, ID: 7, OK: true}
		if got := roundTrip(t, v); got != v {
			t.Errorf("got %+v, want %+v", got, v)
		}
	})
	t.Run("raw scalars", func(t *testing.T) {
		if got := roundTrip(t, math.Inf(-1)); got != math.Inf(-1) {
			t.Errorf("got %v", got)
		}
		if got := roundTrip(t, complex64(1+2i)); got != 1+2i {
			t.Errorf("got %v", got)
		}
		if got := roundTrip(t, [4]int16{1, -2, 3, -4}); got != [4]int16{1, -2, 3, -4} {
			t.Errorf("got %v", got)
		}
	})
	t.Run("cbor struct with slice, string and map", func(t *testing.T) {
		v := named{Name: "héllo", Values: []float64{1, 2.5, math.MaxFloat64}, Tags: map[string]int{"a": 1}}
		if got := roundTrip(t, v); !reflect.DeepEqual(got, v) {
			t.Errorf("got %+v, want %+v", got, v)
		}
	})
	t.Run("cbor string and slice", func(t *testing.T) {
		if got := roundTrip(t, "Y3S9B"); got != "Y3S9B" {
			t.Errorf("got %q", got)
		}
		v := make([]float64, 1024)
		for i := range v {
			v[i] = float64(i) / 3
		}
		if got := roundTrip(t, v); !reflect.DeepEqual(got, v) {
			t.Errorf("[]float64 round trip differs")
		}
	})
	t.Run("BinaryMarshaler pointer handle", func(t *testing.T) {
		v := &handle{id: 0xdeadbeef, n: 1024, ptr: new(int)}
		got := roundTrip(t, v)
		if got == nil || got.id != v.id || got.n != v.n || got.ptr != nil {
			t.Errorf("got %+v, want id=%#x n=%d ptr=nil", got, v.id, v.n)
		}
	})
	t.Run("BinaryMarshaler in a struct", func(t *testing.T) {
		type args struct {
			Samples *handle
			H       float64
		}
		v := args{Samples: &handle{id: 9, n: 3}, H: 0.5}
		got := roundTrip(t, v)
		if got.Samples == nil || got.Samples.id != 9 || got.Samples.n != 3 || got.H != 0.5 {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("plain-data BinaryMarshaler uses its own encoding", func(t *testing.T) {
		if For[podHandle]().Raw() {
			t.Fatalf("Raw() = true for a BinaryMarshaler, want false")
		}
		if got := roundTrip(t, podHandle{ID: 42}); got.ID != 42 {
			t.Errorf("got %+v", got)
		}
	})
}

func TestRaw(t *testing.T) {
	tests := []struct {
		name string
		raw  bool
		got  bool
	}{
		{"float64", true, For[float64]().Raw()},
		{"struct of plain data", true, For[point]().Raw()},
		{"array of structs", true, For[[3]task]().Raw()},
		{"empty struct", true, For[struct{}]().Raw()},
		{"string", false, For[string]().Raw()},
		{"slice", false, For[[]float64]().Raw()},
		{"pointer", false, For[*int]().Raw()},
		{"struct with a string", false, For[named]().Raw()},
		{"array of strings", false, For[[2]string]().Raw()},
		{"interface", false, For[any]().Raw()},
		{"zero Codec", true, Codec[int64]{}.Raw()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.raw {
				t.Errorf("Raw() = %v, want %v", tt.got, tt.raw)
			}
		})
	}
	if n := len(For[task]().plan().bools); n != 0 {
		t.Errorf("task bools = %d, want 0", n)
	}
	if got := For[[2]point]().plan().bools; !reflect.DeepEqual(got, []uintptr{20, 44}) {
		t.Errorf("[2]point bool offsets = %v, want [20 44]", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := For[point]().Append(nil, point{OK: true})
	badBool := bytes.Clone(good)
	badBool[20] = 2
	deep := bytes.Repeat([]byte{0x81}, MaxDepth+1) // [[[[...
	deep = append(deep, 0x01)
	tests := []struct {
		name   string
		decode func() error
		want   error
	}{
		{"raw short", func() error { var v point; return For[point]().Decode(good[:5], &v) }, ErrLength},
		{"raw long", func() error { var v point; return For[point]().Decode(append(good, 0), &v) }, ErrLength},
		{"raw empty", func() error { var v float64; return For[float64]().Decode(nil, &v) }, ErrLength},
		{"raw bool byte 2", func() error { var v point; return For[point]().Decode(badBool, &v) }, ErrInvalidBool},
		{"cbor too deep", func() error { var v any; return For[any]().Decode(deep, &v) }, nil},
		{"cbor truncated", func() error { var v string; return For[string]().Decode([]byte{0x65, 'a'}, &v) }, nil},
		{"cbor trailing bytes", func() error { var v string; return For[string]().Decode([]byte{0x61, 'a', 0}, &v) }, nil},
		{"cbor wrong type", func() error { var v []float64; return For[[]float64]().Decode([]byte{0x61, 'a'}, &v) }, nil},
		{"cbor huge claimed array", func() error {
			var v []float64
			return For[[]float64]().Decode([]byte{0x9b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, &v)
		}, nil},
		{"cbor over MaxEncodedLen", func() error {
			var v []byte
			return For[[]byte]().Decode(make([]byte, MaxEncodedLen+1), &v)
		}, ErrTooLarge},
		{"handle rejects its bytes", func() error {
			var v *handle
			return For[*handle]().Decode([]byte{0x41, 0}, &v)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			if err == nil {
				t.Fatalf("Decode() = nil, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Decode() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendTooLarge(t *testing.T) {
	_, err := For[[]byte]().Append(nil, make([]byte, MaxEncodedLen))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append(64 MiB) = %v, want ErrTooLarge", err)
	}
	if _, err := For[func()]().Append(nil, func() {}); err == nil {
		t.Errorf("Append(func) = nil error, want one")
	}
}

func TestRawAllocs(t *testing.T) {
	c := For[task]()
	buf := make([]byte, 0, 64)
	v := task{ID: 1, Func: 2, X: 3, A: 4, B: 5}
	var out task
	allocs := testing.AllocsPerRun(100, func() {
		b, _ := c.Append(buf[:0], v)
		_ = c.Decode(b, &out)
	})
	if allocs != 0 {
		t.Errorf("raw Append+Decode allocs = %v, want 0", allocs)
	}
}

// TestDecodeValue checks that DecodeValue decodes as Decode does, and that
// for a raw type it allocates nothing even where Decode's destination would
// have to live on the heap (a local whose address Decode takes escapes).
func TestDecodeValue(t *testing.T) {
	c := For[task]()
	want := task{ID: 1, Func: 2, X: 3, A: 4, B: 5}
	b, err := c.Append(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	var bad error
	allocs := testing.AllocsPerRun(100, func() {
		got, err := c.DecodeValue(b)
		if err != nil || got != want {
			bad = fmt.Errorf("DecodeValue = %+v, %v; want %+v", got, err, want)
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs != 0 {
		t.Errorf("raw DecodeValue allocs = %v, want 0", allocs)
	}
	if _, err := c.DecodeValue(b[1:]); !errors.Is(err, ErrLength) {
		t.Errorf("DecodeValue of a short value: %v, want ErrLength", err)
	}
	n := named{Name: "x", Values: []float64{1, 2}, Tags: map[string]int{"k": 2}}
	nb, err := For[named]().Append(nil, n)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := For[named]().DecodeValue(nb); err != nil || !reflect.DeepEqual(got, n) {
		t.Errorf("CBOR DecodeValue = %+v, %v; want %+v", got, err, n)
	}
}

// TestDecodeStrided decodes raw values laid at a stride, as a result
// message holds them, and stops at the first invalid one.
func TestDecodeStrided(t *testing.T) {
	c := For[point]()
	want := []point{{X: 1, ID: 1, OK: true}, {Y: 2, ID: 2}, {X: 3, Y: 3, ID: 3, OK: true}}
	for _, step := range []int{c.Size(), c.Size() + 5} {
		var b []byte
		for _, v := range want {
			at := len(b)
			b, _ = c.Append(b, v)
			b = append(b, make([]byte, step-c.Size())...)
			if len(b)-at != step {
				t.Fatalf("step %d: laid %d bytes", step, len(b)-at)
			}
		}
		got := make([]point, len(want))
		if k, err := c.DecodeStrided(got, b, step); k != len(want) || err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("step %d: DecodeStrided = %d, %v, %+v; want %d, nil, %+v", step, k, err, got, len(want), want)
		}
		b[step+int(reflect.TypeFor[point]().Field(3).Offset)] = 2 // value 1's OK: not a bool
		if k, err := c.DecodeStrided(got, b, step); k != 1 || !errors.Is(err, ErrInvalidBool) {
			t.Errorf("step %d: with value 1 invalid, DecodeStrided = %d, %v; want 1, ErrInvalidBool", step, k, err)
		}
	}
	if _, err := For[int64]().DecodeStrided(make([]int64, 1), make([]byte, 8), 4); !errors.Is(err, ErrLength) {
		t.Errorf("a stride under the value size: %v, want ErrLength", err)
	}
	if _, err := For[string]().DecodeStrided(make([]string, 1), make([]byte, 8), 8); err == nil {
		t.Error("DecodeStrided of a CBOR type succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	seed, _ := For[named]().Append(nil, named{Name: "x", Values: []float64{1}, Tags: map[string]int{"k": 2}})
	f.Add(seed)
	f.Add([]byte{0x81, 0x81, 0x81, 0x01})
	f.Add([]byte{0x9b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n named
		_ = For[named]().Decode(b, &n)
		var a any
		_ = For[any]().Decode(b, &a)
		var h *handle
		_ = For[*handle]().Decode(b, &h)
		var p point
		if err := For[point]().Decode(b, &p); err == nil {
			// Whatever was accepted must encode back to the same bytes.
			again, _ := For[point]().Append(nil, p)
			if !bytes.Equal(again, b) {
				t.Errorf("raw re-encode = %x, want %x", again, b)
			}
		}
		var s []float64
		_ = For[[]float64]().Decode(b, &s)
	})
}

// padded has 7 bytes of padding after A and 6 after C on 64-bit platforms,
// and more inside its array of inner structs.
type padded struct {
	A uint8
	B uint64
	C uint16
	D [2]struct {
		E uint32
		F uint8
	}
}

func TestRawZeroesPadding(t *testing.T) {
	c := For[padded]()
	if !c.Raw() {
		t.Fatal("Raw() = false for padded, want true")
	}
	v := padded{A: 1, B: 2, C: 3}
	v.D[0].E, v.D[1].F = 4, 5
	// Dirty every byte, padding included, then put the fields back.
	fields := v
	for i := range rawBytes(&v, c.plan().size) {
		rawBytes(&v, c.plan().size)[i] = 0xee
	}
	v.A, v.B, v.C, v.D = fields.A, fields.B, fields.C, fields.D
	b, err := c.Append(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	rt := reflect.TypeFor[padded]()
	inner := rt.Field(3).Type.Elem()
	want := []struct {
		name   string
		off, n uintptr
	}{
		{"after A", 1, rt.Field(1).Offset - 1},
		{"after C", rt.Field(2).Offset + 2, rt.Field(3).Offset - rt.Field(2).Offset - 2},
		{"after D[0].F", rt.Field(3).Offset + inner.Field(1).Offset + 1, inner.Size() - inner.Field(1).Offset - 1},
		{"after D[1].F", rt.Field(3).Offset + inner.Size() + inner.Field(1).Offset + 1, inner.Size() - inner.Field(1).Offset - 1},
	}
	for _, w := range want {
		if w.n == 0 {
			t.Fatalf("test layout has no padding %s: the check below could not fail", w.name)
		}
		for i := w.off; i < w.off+w.n; i++ {
			if b[i] != 0 {
				t.Errorf("padding byte %d (%s) = %#x, want 0", i, w.name, b[i])
			}
		}
	}
	var got padded
	if err := c.Decode(b, &got); err != nil || got != v {
		t.Errorf("Decode = %+v, %v, want %+v", got, err, v)
	}
	if allocs := testing.AllocsPerRun(100, func() { b, _ = c.Append(b[:0], v) }); allocs != 0 {
		t.Errorf("Append(padded) allocs = %v, want 0", allocs)
	}
}

// AppendFixed must produce exactly what Append produces value by value,
// padding zeroed, for raw types, and refuse CBOR types.
func TestAppendFixed(t *testing.T) {
	c := For[padded]()
	vs := make([]padded, 3)
	for i := range vs {
		for j := range rawBytes(&vs[i], c.Size()) {
			rawBytes(&vs[i], c.Size())[j] = 0xee // padding dirty too
		}
		vs[i].A, vs[i].B, vs[i].C = uint8(i), uint64(i)<<40, uint16(i)
	}
	var want []byte
	for _, v := range vs {
		var err error
		if want, err = c.Append(want, v); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := c.AppendFixed([]byte("x"), vs)
	if !ok || !bytes.Equal(got[1:], want) || got[0] != 'x' {
		t.Fatalf("AppendFixed = %x, %v; want x + %x, true", got, ok, want)
	}
	if c.Size() != int(reflect.TypeFor[padded]().Size()) {
		t.Errorf("Size = %d, want %d", c.Size(), reflect.TypeFor[padded]().Size())
	}
	if out, ok := For[string]().AppendFixed(nil, []string{"a"}); ok || len(out) != 0 {
		t.Errorf("AppendFixed(string) = %q, %v; want nothing, false", out, ok)
	}
	if n := For[string]().Size(); n != 0 {
		t.Errorf("Size(string) = %d, want 0", n)
	}
}
