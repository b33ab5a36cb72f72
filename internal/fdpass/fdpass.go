// Package fdpass connects shm's segment registry to the process that can
// supply missing segments. Inside an mproc worker, pool sets Fetch to ask the
// parent for a segment's descriptor over the worker's control socket
// (SCM_RIGHTS); in any other process Fetch stays nil and an unknown segment is
// an error.
//
// The three hooks are plain variables, read without synchronisation: each is
// set once, before the first task runs and before any segment is closed
// (Fetch and Closed by pool, Release by shm's init), and only read
// afterwards.
//
// Releasing fetched segments: the parent sets Closed to learn when one of
// its segments is closed, tells its workers, and each worker calls Release
// with that id between tasks, so that it unmaps the copy Lookup fetched
// instead of keeping it for the rest of its life.
package fdpass

import "os"

// Fetch returns the memfd of the segment with the given id, or an error that
// says why it cannot. Set once, before any task runs; read-only afterwards.
var Fetch func(id uint64) (*os.File, error)

// Closed, if non-nil, is called by package shm with the id of each segment
// this process created (shm.New, shm.NewArray, shm.CreateNamed: the ones it
// can serve to workers through Fetch) once that segment has been closed,
// by Close or by the cleanup of a Segment dropped without Close. It is
// called exactly once per segment, after the segment is released (even if
// releasing it reported an error: the segment is gone either way), with no
// shm lock held, on the goroutine that closed it (or the runtime's cleanup
// goroutine): it may call into shm, and must not block for long. It is not
// called for segments this process attached, opened or fetched. Set once,
// before any segment is created; read-only afterwards.
var Closed func(id uint64)

// Release drops the segment with the given id that shm.Lookup fetched into
// this process (through Fetch): it removes it from the registry and closes
// it, unmapping it and closing its descriptor, and returns the error of
// that Close. It returns nil, doing nothing, when this process holds no
// fetched segment of that id: never fetched, released already, or one this
// process created, attached or opened itself (those are never touched).
// A later Lookup of the id fetches it again. Safe for concurrent use.
//
// After Release, slices and Arrays that this process resolved from that
// segment (Array.UnmarshalBinary, Segment.Bytes) must not be used: the
// mapping under them is gone and touching it faults. Call it only between
// tasks, when no task holds such a value.
//
// Package shm sets Release in its init function; it is nil in a program
// that does not link shm.
var Release func(id uint64) error
