package shm

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
)

// Array is a fixed-length array of T in a segment, viewed in place by every
// process that maps the segment: no copies, no encoding. T must be
// fixed-size and pointer-free (numbers, bools, and arrays and structs of
// them); NewArray and ArrayOf refuse anything else with ErrPointerType.
//
// An Array travels as a task argument through its BinaryMarshaler: the
// encoding is only the segment id and length, and UnmarshalBinary resolves
// the id with Lookup (inside an mproc worker, that fetches the segment from
// the parent on first use). Its methods are safe for concurrent use; the
// elements are plain memory that callers synchronise themselves.
type Array[T any] struct {
	seg      *Segment
	n        int
	borrowed bool // the segment came from Lookup: Close leaves it open
}

var (
	_ encoding.BinaryMarshaler   = (*Array[int64])(nil)
	_ encoding.BinaryUnmarshaler = (*Array[int64])(nil)
)

// NewArray creates a segment holding n zeroed elements of T.
func NewArray[T any](n int) (*Array[T], error) {
	size, fp, err := elemInfo[T]()
	if err != nil {
		return nil, err
	}
	if n < 0 || (size != 0 && n > maxPayload/size) {
		return nil, fmt.Errorf("shm: array length %d out of range: %w", n, errInvalidLen)
	}
	seg, err := create("array", n*size, uint64(size), fp)
	if err != nil {
		return nil, err
	}
	return &Array[T]{seg: seg, n: n}, nil
}

// ArrayOf views seg, which must have been created by NewArray[T] (in this or
// another process), as an array of T. It checks the element size and type
// fingerprint stored in the header and returns an error wrapping ErrElemType
// on a mismatch. The Array shares seg: closing either closes both.
func ArrayOf[T any](seg *Segment) (*Array[T], error) {
	size, fp, err := elemInfo[T]()
	if err != nil {
		return nil, err
	}
	h := seg.hdr
	if h.Flags&flagArray == 0 {
		return nil, fmt.Errorf("%w: segment %#x is not an array", ErrElemType, h.ID)
	}
	if h.ElemSize != uint64(size) || h.ElemType != fp {
		var zero T
		return nil, fmt.Errorf("%w: segment %#x holds %d-byte elements of another type, not %T", ErrElemType, h.ID, h.ElemSize, zero)
	}
	return &Array[T]{seg: seg, n: int(h.Size / h.ElemSize)}, nil
}

// Slice returns the elements as a slice aliasing the shared mapping: writes
// are seen by every process (and fault after Freeze). It is valid only while
// the Array is open and reachable; after Close it returns an empty slice.
func (a *Array[T]) Slice() []T {
	b := a.seg.Bytes()
	if b == nil {
		return []T{}
	}
	return sliceOf[T](b, a.n)
}

// Len returns the number of elements.
func (a *Array[T]) Len() int { return a.n }

// Segment returns the segment holding the elements, for passing it to a
// child (AddToCmd) or reading its ID.
func (a *Array[T]) Segment() *Segment { return a.seg }

// Freeze makes the elements read-only for every process; see
// Segment.Freeze.
func (a *Array[T]) Freeze() error { return a.seg.Freeze() }

// Close closes the segment. For an Array made by UnmarshalBinary the
// segment belongs to the process-wide registry (see Lookup) and Close only
// forgets it. Close is idempotent.
func (a *Array[T]) Close() error {
	if a.borrowed {
		return nil
	}
	return a.seg.Close()
}

// marshaledLen is the size of an Array's binary encoding: id, then length,
// both little-endian uint64.
const marshaledLen = 16

// MarshalBinary encodes the array as its segment id and length. The
// receiving process must be able to Lookup the id: it attached the segment
// already, or it is an mproc worker whose parent holds the segment.
func (a *Array[T]) MarshalBinary() ([]byte, error) {
	b := make([]byte, marshaledLen)
	binary.LittleEndian.PutUint64(b, a.seg.ID())
	binary.LittleEndian.PutUint64(b[8:], uint64(a.n))
	return b, nil
}

// UnmarshalBinary resolves an encoding made by MarshalBinary with Lookup and
// checks the element type and length. The Array does not own the segment:
// its Close does nothing.
func (a *Array[T]) UnmarshalBinary(b []byte) error {
	if len(b) != marshaledLen {
		return fmt.Errorf("shm: array encoding of %d bytes, want %d: %w", len(b), marshaledLen, errInvalidLen)
	}
	id, n := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	seg, err := Lookup(id)
	if err != nil {
		return fmt.Errorf("unmarshal array: %w", err)
	}
	arr, err := ArrayOf[T](seg)
	if err != nil {
		return fmt.Errorf("unmarshal array: %w", err)
	}
	if uint64(arr.n) != n {
		return fmt.Errorf("unmarshal array: %w: segment %#x holds %d elements, encoding says %d", ErrElemType, id, arr.n, n)
	}
	*a = Array[T]{seg: seg, n: arr.n, borrowed: true}
	return nil
}

// elemInfo returns the size and fingerprint of T, or an error if T cannot
// live in shared memory.
func elemInfo[T any]() (size int, fingerprint uint64, err error) {
	t := reflect.TypeFor[T]()
	if err := checkElem(t); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrPointerType, err)
	}
	if t.Size() == 0 {
		return 0, 0, fmt.Errorf("%w: %v has size 0", ErrPointerType, t)
	}
	h := fnv.New64a()
	h.Write([]byte(t.String() + "/" + strconv.FormatUint(uint64(t.Size()), 10) + "/"))
	writeLayout(h, t)
	return int(t.Size()), h.Sum64(), nil
}

// checkElem walks t and reports the first part that is not plain data.
func checkElem(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return nil
	case reflect.Array:
		if err := checkElem(t.Elem()); err != nil {
			return fmt.Errorf("%v: %w", t, err)
		}
		return nil
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if err := checkElem(f.Type); err != nil {
				return fmt.Errorf("%v.%s: %w", t, f.Name, err)
			}
		}
		return nil
	default:
		// Pointers, slices, strings, maps, channels, funcs, interfaces, and
		// uintptr/unsafe.Pointer, whose values are addresses in one process.
		return fmt.Errorf("%v is a %v", t, t.Kind())
	}
}

// writeLayout adds the shape of t (kinds, field names, offsets) to the
// fingerprint, so that two types that print the same name but differ in
// layout (different builds, same-named packages) do not match.
func writeLayout(h interface{ Write([]byte) (int, error) }, t reflect.Type) {
	h.Write([]byte(t.Kind().String()))
	switch t.Kind() {
	case reflect.Array:
		h.Write([]byte("[" + strconv.Itoa(t.Len()) + "]"))
		writeLayout(h, t.Elem())
	case reflect.Struct:
		h.Write([]byte("{"))
		for i := range t.NumField() {
			f := t.Field(i)
			h.Write([]byte(f.Name + "@" + strconv.FormatUint(uint64(f.Offset), 10) + ":"))
			writeLayout(h, f.Type)
			h.Write([]byte(";"))
		}
		h.Write([]byte("}"))
	}
}
