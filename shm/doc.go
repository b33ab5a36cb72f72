// Package shm provides shared memory for cooperating processes: segments
// that a parent creates and its children (or unrelated processes) map, and
// typed arrays viewed in place in every process, with no copying or
// encoding.
//
// A Segment is a memfd_create(2) file sealed against resizing, with a
// 64-byte header (magic, layout version, random id, sizes, element type,
// checksum) followed by the payload. A process that attaches a segment
// validates the header as hostile input and gets a distinct error for each
// kind of damage (ErrBadMagic, ErrVersion, ErrChecksum, ErrTruncated,
// ErrBadHeader, ErrNotSealed). Because a memfd has no name, its memory is
// freed when the last process holding it closes it or dies, even by
// kill -9.
//
// Parent and child:
//
//	arr, err := shm.NewArray[float64](len(samples))
//	...
//	defer arr.Close()
//	copy(arr.Slice(), samples)
//	if err := arr.Freeze(); err != nil { ... } // read-only for everyone
//	cmd := exec.Command(worker)
//	fd := arr.Segment().AddToCmd(cmd) // tell the child fd, e.g. in its env
//	err = cmd.Start()
//
//	// in the child:
//	seg, err := shm.OpenFD(fd)
//	...
//	arr, err := shm.ArrayOf[float64](seg) // checks element type and size
//	xs := arr.Slice()                     // the parent's samples, not a copy
//
// Inside mproc's pool, an Array can simply be passed as a task argument: it
// encodes as (segment id, length), and the worker resolves the id with
// Lookup, which fetches the segment from the parent on first use.
//
// Unrelated processes can meet by name with CreateNamed and OpenNamed
// (/dev/shm/mproc-<name>, created O_EXCL with mode 0600). Both use the file
// only if it is still a regular file of this user with mode 0600: a FIFO,
// a symlink or someone else's file at the name is an error, not a hang.
//
// # Caveats
//
// Slices returned by Segment.Bytes and Array.Slice point into the mapping.
// They are valid only until Close; using them afterwards faults or reads
// unrelated memory. They do not keep the Segment alive either: keep the
// Segment or Array reachable (defer its Close) while you use them. A
// segment dropped without Close has its descriptor closed by a cleanup, but
// its mapping stays until the process exits, because a slice may still
// point into it.
//
// Inside an mproc worker, a segment that Lookup fetched from the parent
// (an Array received as a task argument) stays mapped after the task, so
// the next task that names it costs nothing; once the parent closes the
// segment, the pool releases the worker's copy between tasks. Do not keep
// an Array or slice received in one task for use in a later one: its
// mapping may be gone by then.
//
// Freeze makes a segment read-only for every process: this process's slices
// stay valid but writing through them faults (SIGSEGV), and nobody can map
// it writable again. The kernel refuses the seal while another process maps
// the segment writable, so freeze before handing it on. Named segments
// cannot be frozen.
//
// Never store Go pointers, strings, slices, maps or interfaces in shared
// memory: they mean nothing in another process and the garbage collector
// does not see them there. Array refuses such element types; raw Bytes
// cannot check, so store offsets and plain numbers. The payload is ordinary
// memory: synchronise concurrent access across processes yourself, for
// example with package ipc, and use sync/atomic for shared control words.
//
// Anyone who can write a segment can corrupt its payload; the header is
// checked once, on attach, and never re-read. A named segment is an ordinary
// tmpfs file: it cannot be sealed against shrinking, so a process that
// truncates it makes the others fault, and a creator killed with -9 leaves
// its file behind until the next CreateNamed of that name reclaims it.
// Prefer New for anything a parent hands to its own children.
//
// Linux only: on other systems every constructor returns an error wrapping
// errors.ErrUnsupported.
package shm
