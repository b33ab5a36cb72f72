package ipc

import (
	"sync/atomic"
	"unsafe"
)

// This is the only file of package ipc that converts shared memory into Go
// values (futex_linux.go also takes the address of a word, but only inside the
// syscall argument list, as package syscall documents).
//
// Invariants every caller upholds:
//   - mem is backed by memory the Go collector never moves: a MAP_SHARED
//     mapping, or a heap []byte (the Go heap is non-moving) kept alive by the
//     view's owner for as long as the view is used;
//   - the view starts at a 64-byte boundary (checked here) so every 32- and
//     64-bit atomic word in a layout struct is naturally aligned;
//   - the layout types hold only fixed-size integers and sync/atomic values:
//     no Go pointers, strings or slices ever live in shared memory.

// view returns mem[0:sizeof(T)] as a *T. It returns nil when mem is too short
// or not 64-byte aligned.
func view[T any](mem []byte) *T {
	var zero T
	if uintptr(len(mem)) < unsafe.Sizeof(zero) || !aligned(mem) {
		return nil
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(mem)))
}

// aligned reports whether mem starts on a 64-byte boundary.
func aligned(mem []byte) bool {
	return len(mem) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%lineSize == 0
}

// sizeOf is unsafe.Sizeof for layout types, as an int.
func sizeOf[T any]() int {
	var zero T
	return int(unsafe.Sizeof(zero))
}

// seqWord returns the futex word of an event count (see eventWords): the low
// 32 bits of the 64-bit word, which sit at its address on a little-endian
// machine and 4 bytes in on a big-endian one. futex(2) compares and sleeps
// on exactly those 4 bytes; Go code never loads through the result, it only
// passes its address to the kernel.
func seqWord(w *atomic.Uint64) *atomic.Uint32 {
	p := unsafe.Pointer(w)
	if bigEndian {
		p = unsafe.Add(p, 4)
	}
	return (*atomic.Uint32)(p)
}

// bigEndian reports the byte order of this machine.
var bigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()
