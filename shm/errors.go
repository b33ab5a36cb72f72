package shm

import (
	"errors"
	"fmt"
	"os"
)

// Errors returned when a segment's header fails validation on attach. The
// header is read as hostile input: each check has its own error so that a
// caller can tell a foreign file from a corrupted or incompatible one.
var (
	// ErrBadMagic is returned when the file does not start with the mproc
	// segment magic: it is not an mproc segment at all.
	ErrBadMagic = errors.New("shm: not an mproc segment (bad magic)")

	// ErrVersion is returned when the header was written by an incompatible
	// layout version; build both processes from the same mproc version.
	ErrVersion = errors.New("shm: unsupported segment layout version")

	// ErrChecksum is returned when the header's checksum does not match its
	// contents: the header was overwritten after creation.
	ErrChecksum = errors.New("shm: segment header checksum mismatch")

	// ErrTruncated is returned when the file is shorter than the header, or
	// shorter than the payload size the header claims.
	ErrTruncated = errors.New("shm: segment file shorter than its header claims")

	// ErrBadHeader is returned when a header passes its checksum but its
	// fields contradict each other (zero id, unknown flags, an element size
	// that does not divide the payload).
	ErrBadHeader = errors.New("shm: inconsistent segment header")

	// ErrNotSealed is returned by Attach and OpenFD for a memfd without the
	// F_SEAL_SHRINK and F_SEAL_GROW seals: a peer could shrink it and make
	// every reader fault with SIGBUS, so it is refused.
	ErrNotSealed = errors.New("shm: segment is not sealed against resizing")

	// ErrPointerType is returned by NewArray and ArrayOf for an element type
	// that holds pointers (pointers, slices, strings, maps, channels,
	// functions, interfaces, uintptr) at any depth: such values mean nothing
	// in another process and are invisible to the garbage collector.
	ErrPointerType = errors.New("shm: element type must be fixed-size and pointer-free")

	// ErrElemType is returned by ArrayOf and UnmarshalBinary when the
	// segment was not created as an array of the requested element type, or
	// its length differs from the one expected.
	ErrElemType = errors.New("shm: segment does not hold elements of this type")

	// ErrUnknownSegment is returned by Lookup for an id that is not live in
	// this process and cannot be fetched from a parent (outside an mproc
	// worker, or the parent no longer has it).
	ErrUnknownSegment = errors.New("shm: unknown segment id")
)

// errInvalidLen is returned for array lengths and encodings out of range.
var errInvalidLen = fmt.Errorf("invalid length: %w", os.ErrInvalid)
