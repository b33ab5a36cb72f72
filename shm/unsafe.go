package shm

import "unsafe"

// This file holds every use of unsafe in the package. The payload of a
// segment is a mapping outside the Go heap: the garbage collector neither
// scans nor moves it, so viewing it as []T is sound as long as T holds no
// pointers (checkElem enforces that) and the view is dropped before Close
// unmaps it (documented in Caveats).

// sliceOf views the first n elements of b as a []T. b must be at least
// n*sizeof(T) bytes long and suitably aligned for T: payloads start 64 bytes
// into a page-aligned mapping, which covers every Go type's alignment.
func sliceOf[T any](b []byte, n int) []T {
	if n == 0 || len(b) == 0 {
		return []T{}
	}
	var zero T
	if uintptr(n)*unsafe.Sizeof(zero) > uintptr(len(b)) {
		panic("shm: invariant violated: array view larger than its mapping")
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// mappingAddr returns the start address of a mapping, for remapping it in
// place with MAP_FIXED (Freeze).
func mappingAddr(b []byte) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(b))
}
