package codec

import "unsafe"

// The helpers below are the only use of unsafe in this package. They view
// a value of a fixed-size, pointer-free type as its bytes. That is sound
// because plan() admits only types whose every bit is plain data: no pointer,
// slice, string, map, interface, chan or func can be forged or leaked, and the
// GC has nothing to scan in them. Decode checks the length before copying,
// and the bool bytes (the one plain kind with invalid bit patterns) before
// storing them.

// rawBytes returns the size bytes of *v. The slice aliases v.
func rawBytes[T any](v *T, size int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), size)
}

// rawSlice returns the bytes of vs's elements, len(vs)*size of them (a Go
// array's element stride is its element's size). The slice aliases vs.
func rawSlice[T any](vs []T, size int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(vs))), len(vs)*size)
}
