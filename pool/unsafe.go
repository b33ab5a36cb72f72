package pool

import "unsafe"

// This is the only file of package pool that converts shared memory into a
// Go value.
//
// Invariants the caller upholds: mem is a page-aligned slice of a MAP_SHARED
// mapping that stays mapped for as long as the view is used (the link's
// segment outlives the link), and linkControl holds only sync/atomic
// words: no Go pointer, string or slice ever lives in shared memory.

// controlView returns the link control page at the start of mem.
func controlView(mem []byte) *linkControl {
	if uintptr(len(mem)) < unsafe.Sizeof(linkControl{}) || uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%64 != 0 {
		panic("pool: invariant broken: link control page too short or misaligned")
	}
	return (*linkControl)(unsafe.Pointer(unsafe.SliceData(mem)))
}
