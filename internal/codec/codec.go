package codec

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Limits applied to CBOR input by Decode (and to output by Append), so that
// hostile or corrupt bytes give an error instead of exhausting memory or
// the stack.
const (
	// MaxEncodedLen is the largest encoded message, in bytes, that Append
	// produces and Decode accepts (it also bounds every byte or text string).
	MaxEncodedLen = 64 << 20
	// MaxElements is the largest element count of one CBOR array, and the
	// largest pair count of one map.
	MaxElements = 1 << 24
	// MaxDepth is the deepest nesting of arrays, maps and tags.
	MaxDepth = 32
)

// Codec encodes and decodes values of type T to and from bytes. Get one with
// For. A Codec is a small immutable value: copy it freely and use it from
// any number of goroutines at once.
//
// Fixed-size pointer-free types (bool, integers, floats, complex numbers,
// and arrays and structs of those) that do not implement
// encoding.BinaryMarshaler travel as their raw in-memory bytes: no
// reflection per call, and an encoded value is exactly unsafe.Sizeof(T)
// bytes. Every other type travels as CBOR (RFC 8949); a type implementing
// encoding.BinaryMarshaler and encoding.BinaryUnmarshaler (such as
// *shm.Array) travels as a CBOR byte string holding its MarshalBinary
// output.
type Codec[T any] struct {
	p *plan
}

// plan is what For decides once per type.
type plan struct {
	node  *tnode // CBOR types: the type compiled for the budget walk
	raw   bool
	size  int       // unsafe.Sizeof(T) for raw types
	bools []uintptr // offsets of bool bytes in raw types
	pads  []span    // padding bytes of raw types, zeroed by Append
}

// span is a byte range [off, off+n) of a raw value.
type span struct{ off, n uintptr }

var (
	plans sync.Map // reflect.Type -> *plan

	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{}.UserBufferEncMode()
	if err != nil {
		panic("codec: invariant broken: default CBOR encoding options rejected: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  MaxDepth,
		MaxArrayElements: MaxElements,
		MaxMapPairs:      MaxElements,
	}.DecMode()
	if err != nil {
		panic("codec: invariant broken: CBOR decoding limits rejected: " + err.Error())
	}
}

// For returns the Codec for T. The choice between raw bytes and CBOR is made
// once per type and cached, so For is cheap to call repeatedly.
func For[T any]() Codec[T] {
	return Codec[T]{p: planOf(reflect.TypeFor[T]())}
}

// Raw reports whether c encodes values as their raw fixed-size bytes rather
// than as CBOR.
func (c Codec[T]) Raw() bool { return c.plan().raw }

// Size returns the encoded size of every value of a raw type, and 0 for a
// CBOR type, whose values vary in size.
func (c Codec[T]) Size() int {
	if p := c.plan(); p.raw {
		return p.size
	}
	return 0
}

// AppendFixed appends the encodings of vs back to back, Size bytes each,
// in one copy, and returns the extended slice. It is for raw types only
// (Size > 0): for a CBOR type it appends nothing and reports false.
func (c Codec[T]) AppendFixed(dst []byte, vs []T) ([]byte, bool) {
	p := c.plan()
	if !p.raw {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, rawSlice(vs, p.size)...)
	if len(p.pads) > 0 {
		for at := start; at < len(dst); at += p.size {
			for _, pad := range p.pads {
				clear(dst[at+int(pad.off) : at+int(pad.off+pad.n)])
			}
		}
	}
	return dst, true
}

func (c Codec[T]) plan() *plan {
	if c.p != nil {
		return c.p
	}
	return planOf(reflect.TypeFor[T]())
}

// Append appends the encoding of v to dst and returns the extended slice.
// It fails only for CBOR types: a value CBOR cannot represent (a channel, a
// function, a failing MarshalBinary) or an encoding over MaxEncodedLen.
func (c Codec[T]) Append(dst []byte, v T) ([]byte, error) {
	p := c.plan()
	if p.raw {
		start := len(dst)
		dst = append(dst, rawBytes(&v, p.size)...)
		// Padding holds whatever the compiler left there (stack bytes of
		// this process): never hand it to another process.
		for _, pad := range p.pads {
			clear(dst[start+int(pad.off) : start+int(pad.off+pad.n)])
		}
		return dst, nil
	}
	start := len(dst)
	buf := bytes.NewBuffer(dst)
	if err := encMode.MarshalToBuffer(v, buf); err != nil {
		return dst, fmt.Errorf("encode %v: %w", reflect.TypeFor[T](), err)
	}
	out := buf.Bytes()
	if len(out)-start > MaxEncodedLen {
		return dst, fmt.Errorf("encode %v: %d bytes: %w", reflect.TypeFor[T](), len(out)-start, ErrTooLarge)
	}
	return out, nil
}

// Decode decodes b, one whole encoded value, into *v. The input is treated
// as hostile: a wrong length, trailing bytes, malformed CBOR, or input over
// the limits (MaxEncodedLen, MaxElements, MaxDepth) gives an error, never a
// panic. Before decoding CBOR it adds up the memory the value will take
// (element counts times element sizes, nested) and refuses, with an error
// wrapping ErrOverBudget, a message that describes more than
// DecodeBudgetRatio bytes per input byte (at least MinDecodeBudget, at most MaxDecodeBudget), having
// allocated nothing for it. On error *v may be partly written. Decode does
// not retain b.
func (c Codec[T]) Decode(b []byte, v *T) error {
	p := c.plan()
	if p.raw {
		return decodeRaw[T](p, b, rawBytes(v, p.size))
	}
	if len(b) > MaxEncodedLen {
		return fmt.Errorf("decode %v: %d bytes: %w", reflect.TypeFor[T](), len(b), ErrTooLarge)
	}
	if _, err := checkBudget(b, p.node, decodeBudget(len(b))); err != nil {
		if errors.Is(err, errOverBudget) {
			return fmt.Errorf("decode %v: %d-byte message describes more than its budget of %d bytes of memory "+
				"(a forged or corrupt element count; send bulk data as a shm.Array): %w",
				reflect.TypeFor[T](), len(b), decodeBudget(len(b)), ErrOverBudget)
		}
		// Prefer the library's account of malformed input; if it has
		// none, the walk's refusal stands (it never lets through what
		// it could not bound).
		if werr := decMode.Wellformed(b); werr != nil {
			err = werr
		}
		return fmt.Errorf("decode %v: %w", reflect.TypeFor[T](), err)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %v: %w", reflect.TypeFor[T](), err)
	}
	return nil
}

// DecodeValue is Decode returning the value. For a raw type it allocates
// nothing: Decode's v escapes (CBOR decodes through an interface), so a
// caller's local passed to it lives on the heap, one allocation per value.
func (c Codec[T]) DecodeValue(b []byte) (T, error) {
	if p := c.plan(); p.raw {
		var v T
		err := decodeRaw[T](p, b, rawBytes(&v, p.size))
		return v, err
	}
	v := new(T)
	err := c.Decode(b, v)
	return *v, err
}

// DecodeStrided decodes raw values into vs from b, value k at
// b[k*step:][:Size], and returns how many it decoded: all of them, or
// those before the first invalid one (a bool byte other than 0 or 1),
// whose error it returns. It is for raw types only (Size > 0) and step >=
// Size; b must hold len(vs) values at that step, or it panics.
func (c Codec[T]) DecodeStrided(vs []T, b []byte, step int) (int, error) {
	p := c.plan()
	if !p.raw || step < p.size {
		return 0, fmt.Errorf("decode %v: a stride of %d for raw values of %d bytes: %w", reflect.TypeFor[T](), step, p.size, ErrLength)
	}
	for k := range vs {
		if err := decodeRaw[T](p, b[k*step:k*step+p.size], rawBytes(&vs[k], p.size)); err != nil {
			return k, err
		}
	}
	return len(vs), nil
}

// decodeRaw checks b, a raw encoding of T, and copies it into dst, the
// bytes of the destination value.
func decodeRaw[T any](p *plan, b, dst []byte) error {
	if len(b) != p.size {
		return fmt.Errorf("decode %v: got %d bytes, want %d: %w", reflect.TypeFor[T](), len(b), p.size, ErrLength)
	}
	for _, off := range p.bools {
		if b[off] > 1 {
			return fmt.Errorf("decode %v: byte %d is %#x: %w", reflect.TypeFor[T](), off, b[off], ErrInvalidBool)
		}
	}
	copy(dst, b)
	return nil
}

var (
	binaryMarshaler   = reflect.TypeFor[encoding.BinaryMarshaler]()
	binaryUnmarshaler = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// planOf returns the cached plan for t, computing it on first use.
func planOf(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := &plan{}
	if t != nil && !marshals(t) {
		if bools, ok := rawBools(t, 0, nil); ok {
			p.raw, p.size, p.bools = true, int(t.Size()), bools
			p.pads = padding(t, 0, nil)
		}
	}
	if !p.raw && t != nil {
		p.node = nodeOf(t)
	}
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*plan)
}

// marshals reports whether t (or *t) has its own binary encoding, which the
// raw path would bypass.
func marshals(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(binaryMarshaler) || pt.Implements(binaryMarshaler) ||
		t.Implements(binaryUnmarshaler) || pt.Implements(binaryUnmarshaler)
}

// rawBools reports whether t is fixed-size and pointer-free and, if so,
// appends to bools the offsets (relative to base) of its bool bytes.
func rawBools(t reflect.Type, base uintptr, bools []uintptr) ([]uintptr, bool) {
	switch t.Kind() {
	case reflect.Bool:
		return append(bools, base), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return bools, true
	case reflect.Array:
		if t.Len() == 0 {
			return bools, true
		}
		elem := t.Elem()
		inner, ok := rawBools(elem, 0, nil)
		if !ok {
			return nil, false
		}
		if len(inner) > 0 {
			for i := range t.Len() {
				for _, off := range inner {
					bools = append(bools, base+uintptr(i)*elem.Size()+off)
				}
			}
		}
		return bools, true
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			var ok bool
			if bools, ok = rawBools(f.Type, base+f.Offset, bools); !ok {
				return nil, false
			}
		}
		return bools, true
	}
	return nil, false
}

// padding appends to pads the byte ranges of t (at base) that belong to no
// field: gaps between struct fields and after the last one, at any depth.
// Adjacent ranges are merged. Blank (_) fields are fields, not padding.
func padding(t reflect.Type, base uintptr, pads []span) []span {
	add := func(off, n uintptr) {
		if n == 0 {
			return
		}
		if k := len(pads) - 1; k >= 0 && pads[k].off+pads[k].n == off {
			pads[k].n += n
			return
		}
		pads = append(pads, span{off, n})
	}
	switch t.Kind() {
	case reflect.Array:
		elem := t.Elem()
		if inner := padding(elem, 0, nil); len(inner) > 0 {
			for i := range t.Len() {
				for _, p := range inner {
					add(base+uintptr(i)*elem.Size()+p.off, p.n)
				}
			}
		}
	case reflect.Struct:
		var end uintptr
		for i := range t.NumField() {
			f := t.Field(i)
			add(base+end, f.Offset-end)
			pads = padding(f.Type, base+f.Offset, pads)
			end = f.Offset + f.Type.Size()
		}
		add(base+end, t.Size()-end)
	}
	return pads
}
