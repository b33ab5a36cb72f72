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

// boardView returns the header of a board segment at the start of mem
// (board.go); the same invariants hold: boardHeader holds only sync/atomic
// words and mem stays mapped while the view is used.
func boardView(mem []byte) *boardHeader {
	if uintptr(len(mem)) < unsafe.Sizeof(boardHeader{}) || uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%64 != 0 {
		panic("pool: invariant broken: board header too short or misaligned")
	}
	return (*boardHeader)(unsafe.Pointer(unsafe.SliceData(mem)))
}
