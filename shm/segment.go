package shm

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/edsrzf/mmap-go"
	"github.com/mproc/mproc/internal/fdpass"
)

// namePrefix starts every memfd name and /dev/shm file name, so that leak
// checks (internal/leakcheck) and /proc/PID/fd listings recognise them.
const namePrefix = "mproc"

// maxNameLen keeps "mproc-<name>" under the 249-byte memfd name limit
// (memfd_create(2)) and well under NAME_MAX for /dev/shm files.
const maxNameLen = 200

// Segment is a shared-memory region: a 64-byte header followed by a payload
// of Len bytes that every process mapping it sees. Its methods are safe for
// concurrent use; the payload itself is plain memory that callers
// synchronise themselves (for example with package ipc).
type Segment struct {
	mu     sync.Mutex
	res    *resources // nil after Close
	hdr    header     // validated copy, never re-read from the mapping
	data   []byte     // payload view into res.mem
	frozen bool

	cleanup runtime.Cleanup
}

var _ io.Closer = (*Segment)(nil)

// resources is what a Segment owns. It is separate from Segment so that the
// cleanup registered with runtime.AddCleanup can reach it without keeping
// the Segment alive.
type resources struct {
	f    *os.File
	mem  mmap.MMap // the whole file, header included
	path string    // set for named segments this process created: unlinked on release
	id   uint64
	// created is set for segments this process made (New, NewArray,
	// CreateNamed): the ones it can serve to its workers, which
	// fdpass.Closed tells when they are gone.
	created bool
}

// release closes the descriptor and removes the name. It unmaps only when
// unmap is true: the runtime cleanup passes false, because slices handed out
// by Bytes or Slice may still point into the mapping, and a leaked mapping is
// better than a fault in unrelated code.
func (r *resources) release(unmap bool) error {
	var errs []error
	if r.path != "" {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove named segment: %w", err))
		}
	}
	if unmap && r.mem != nil {
		if err := r.mem.Unmap(); err != nil {
			errs = append(errs, fmt.Errorf("unmap segment: %w", os.NewSyscallError("munmap", err)))
		}
	}
	if err := r.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close segment: %w", err))
	}
	return errors.Join(errs...)
}

// notifyClosed tells fdpass.Closed that a segment this process created is
// gone; the callers (Close, the cleanup) run once per segment.
func (r *resources) notifyClosed() {
	if !r.created {
		return
	}
	if closed := fdpass.Closed; closed != nil {
		closed(r.id)
	}
}

// newSegment wraps resources whose header h has been written or validated,
// registers the segment and arms the safety-net cleanup.
func newSegment(r *resources, h header, frozen bool) *Segment {
	s := &Segment{
		res:    r,
		hdr:    h,
		data:   r.mem[HeaderSize : HeaderSize+h.Size : HeaderSize+h.Size],
		frozen: frozen,
	}
	s.cleanup = runtime.AddCleanup(s, func(r *resources) {
		unregister(r.id, nil)
		_ = r.release(false) // nobody to report to: the Segment was dropped without Close
		r.notifyClosed()
	}, r)
	register(s)
	return s
}

// Bytes returns the payload, len(Bytes()) == Len(). The slice aliases the
// shared mapping: it is valid only until Close, and after Freeze writing
// through it faults. Bytes does not keep the Segment alive; keep the Segment
// reachable (and unclosed) while the slice is in use. After Close it returns
// nil.
func (s *Segment) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data
}

// Len returns the payload size in bytes, as passed to New.
func (s *Segment) Len() int { return int(s.hdr.Size) }

// ID returns the segment's random nonzero id, the same in every process that
// maps it. Lookup resolves it back to a Segment.
func (s *Segment) ID() uint64 { return s.hdr.ID }

// File returns the descriptor behind the segment, for passing it to another
// process (exec.Cmd.ExtraFiles, SCM_RIGHTS). The Segment keeps ownership: do
// not close it. It returns nil after Close.
func (s *Segment) File() *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res == nil {
		return nil
	}
	return s.res.f
}

// Frozen reports whether the segment is read-only for every process (see
// Freeze).
func (s *Segment) Frozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen
}

// AddToCmd appends the segment's descriptor to cmd.ExtraFiles and returns the
// descriptor number the child will see, for the child to pass to OpenFD
// (through an argument or environment variable). Call it before cmd.Start;
// the Segment must stay open until Start returns.
func (s *Segment) AddToCmd(cmd *exec.Cmd) int {
	cmd.ExtraFiles = append(cmd.ExtraFiles, s.File())
	return 2 + len(cmd.ExtraFiles) // entry i becomes fd 3+i (os/exec)
}

// Close unmaps the segment, closes its descriptor, removes it from the
// registry and, for a segment made by CreateNamed, removes its /dev/shm
// file. Slices from Bytes (and Array.Slice) must not be used afterwards. The
// memory itself is freed once every process has closed or exited. Close is
// idempotent: later calls return nil.
func (s *Segment) Close() error {
	s.mu.Lock()
	r := s.res
	if r == nil {
		s.mu.Unlock()
		return nil
	}
	// Once res is nil no other method touches the mapping, so it is
	// released outside the lock, and fdpass.Closed runs with no lock held.
	s.res, s.data = nil, nil
	s.cleanup.Stop()
	s.mu.Unlock()
	unregister(r.id, s)
	err := r.release(true)
	r.notifyClosed()
	return err
}

// validName checks the caller's part of a segment name.
func validName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("shm: name of %d bytes is too long: use at most %d: %w", len(name), maxNameLen, os.ErrInvalid)
	}
	if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("shm: name %q may not contain '/' or NUL or be a dot entry: %w", name, os.ErrInvalid)
	}
	return nil
}

// checkSize rejects payload sizes that cannot be mapped.
func checkSize(size int) error {
	if size < 0 || size > maxPayload {
		return fmt.Errorf("shm: size %d out of range [0, %d]: %w", size, maxPayload, os.ErrInvalid)
	}
	return nil
}

// maxPayload keeps HeaderSize+size from overflowing an int or an off_t.
const maxPayload = math.MaxInt - HeaderSize
