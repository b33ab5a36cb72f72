package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// sizeSeals stop anyone from resizing the file. Without them a peer that
// shrinks the memfd makes every process touching the lost pages die of
// SIGBUS (memfd_create(2), "File sealing"), so Attach refuses memfds that lack them.
const sizeSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// New creates an anonymous segment with a payload of size bytes, zeroed.
// name only labels it in /proc/PID/fd and /proc/PID/maps (as
// "/memfd:mproc-<name>"); it need not be unique. The memory lives until the
// last process holding the descriptor or a mapping closes it or exits, even
// if every process is killed: nothing is left behind on a crash. Pass it to
// a child with AddToCmd and OpenFD, or with SCM_RIGHTS and Attach.
func New(name string, size int) (*Segment, error) {
	return create(name, size, 0, 0)
}

// create makes a sealed memfd segment; elemSize and elemType are set for
// arrays.
func create(name string, size int, elemSize, elemType uint64) (*Segment, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := checkSize(size); err != nil {
		return nil, err
	}
	label := namePrefix
	if name != "" {
		label += "-" + name
	}
	// memfd_create(2): MFD_CLOEXEC so that only the children we hand it to
	// inherit it; MFD_ALLOW_SEALING so that it can be sealed below.
	fd, err := unix.MemfdCreate(label, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", os.NewSyscallError("memfd_create", err))
	}
	f := os.NewFile(uintptr(fd), "/memfd:"+label)
	if err := unix.Ftruncate(fd, int64(HeaderSize+size)); err != nil {
		return nil, errors.Join(fmt.Errorf("size segment to %d bytes: %w", HeaderSize+size, os.NewSyscallError("ftruncate", err)), f.Close())
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, sizeSeals); err != nil {
		return nil, errors.Join(fmt.Errorf("seal segment size: %w", os.NewSyscallError("fcntl", err)), f.Close())
	}
	var flags uint32
	if elemSize != 0 {
		flags |= flagArray
	}
	return mapNew(&resources{f: f}, size, flags, elemSize, elemType)
}

// mapNew maps a freshly sized file, writes its header and registers it. It
// takes ownership of r and releases all of it (mapping, descriptor, name)
// on failure.
func mapNew(r *resources, size int, flags uint32, elemSize, elemType uint64) (s *Segment, err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, r.release(true))
		}
	}()
	mem, err := mmap.MapRegion(r.f, HeaderSize+size, mmap.RDWR, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("map segment: %w", os.NewSyscallError("mmap", err))
	}
	r.mem = mem
	if err := prefault(mem, true); err != nil {
		return nil, fmt.Errorf("allocate segment of %d bytes: %w", size, err)
	}
	h := header{
		Magic:    magic,
		Version:  layoutVersion,
		Flags:    flags,
		Size:     uint64(size),
		ElemSize: elemSize,
		ElemType: elemType,
	}
	for h.ID == 0 || registered(h.ID) != nil {
		h.ID = rand.Uint64() // ChaCha8, seeded by the runtime from the OS
	}
	r.id = h.ID
	r.created = true
	h.encode(mem)
	return newSegment(r, h, false), nil
}

// OpenFD attaches the segment at descriptor fd, typically one inherited
// through AddToCmd, and takes ownership of the descriptor. See Attach.
func OpenFD(fd int) (*Segment, error) {
	if fd < 0 {
		return nil, fmt.Errorf("shm: descriptor %d: %w", fd, os.ErrInvalid)
	}
	return Attach(os.NewFile(uintptr(fd), "/memfd:"+namePrefix+"-fd"+strconv.Itoa(fd)))
}

// Attach maps a segment received as a descriptor (SCM_RIGHTS, ExtraFiles)
// and takes ownership of f: the returned Segment closes it, and on error f
// is closed too. The header is validated as hostile input; the errors wrap
// ErrBadMagic, ErrVersion, ErrChecksum, ErrTruncated, ErrBadHeader or
// ErrNotSealed. A frozen segment, or one received read-only, is mapped
// read-only. The segment joins the registry (see Lookup).
func Attach(f *os.File) (*Segment, error) {
	if f == nil {
		return nil, fmt.Errorf("shm: attach nil file: %w", os.ErrInvalid)
	}
	s, err := attach(f, true)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", f.Name(), err)
	}
	return s, nil
}

// attach validates and maps f, which it owns. Named segments live on tmpfs,
// where files cannot be sealed, so requireSeals is false for them.
func attach(f *os.File, requireSeals bool) (s *Segment, err error) {
	r := &resources{f: f}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.release(true))
		}
	}()
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: not a regular file (mode %#o)", ErrBadMagic, st.Mode)
	}
	if st.Size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrTruncated, st.Size, HeaderSize)
	}
	if st.Size > HeaderSize+maxPayload {
		return nil, fmt.Errorf("%w: file of %d bytes cannot be mapped", ErrBadHeader, st.Size)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		if requireSeals {
			return nil, fmt.Errorf("%w: %w", ErrNotSealed, os.NewSyscallError("fcntl", err))
		}
		seals = 0
	}
	if requireSeals && seals&sizeSeals != sizeSeals {
		return nil, fmt.Errorf("%w: seals %#x", ErrNotSealed, seals)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	// A write-sealed file cannot be mapped writable (EPERM), nor can one
	// opened read-only (EACCES): map those read-only.
	readOnly := seals&unix.F_SEAL_WRITE != 0 || fl&unix.O_ACCMODE == unix.O_RDONLY
	prot := mmap.RDWR
	if readOnly {
		prot = mmap.RDONLY
	}
	mem, err := mmap.MapRegion(f, int(st.Size), prot, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("map segment: %w", os.NewSyscallError("mmap", err))
	}
	r.mem = mem
	if err := prefault(mem, false); err != nil {
		return nil, fmt.Errorf("map segment: %w", err)
	}
	h, err := decodeHeader(mem, st.Size)
	if err != nil {
		return nil, err
	}
	r.id = h.ID
	return newSegment(r, h, seals&unix.F_SEAL_WRITE != 0), nil
}

// Freeze makes the payload read-only for every process, for data written
// once and then shared, such as the samples every worker reads. It remaps this process's view
// PROT_READ at the same address (MAP_FIXED), so slices from Bytes stay valid
// but writing through them faults, then adds F_SEAL_WRITE and F_SEAL_SEAL
// (memfd_create(2)): from then on nobody can write the file or map it
// writable, and OpenFD/Attach map it read-only. The kernel refuses the seal
// while another mapping could write, so Freeze before handing the segment to
// other processes; if it fails, the segment is left writable as before.
// Named segments cannot be sealed: Freeze returns an error wrapping
// errors.ErrUnsupported for them. Freezing a frozen segment does nothing.
func (s *Segment) Freeze() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res == nil {
		return fmt.Errorf("freeze segment: %w", os.ErrClosed)
	}
	if s.frozen {
		return nil
	}
	if s.hdr.Flags&flagNamed != 0 {
		return fmt.Errorf("freeze named segment: tmpfs files cannot be sealed: %w", errors.ErrUnsupported)
	}
	// A PROT_READ mapping of a descriptor open for writing still counts as
	// writable for F_SEAL_WRITE (it may be mprotect'ed back), so map through
	// a read-only descriptor of the same file.
	ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(s.res.f.Fd())), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("freeze segment: reopen read-only: %w", err)
	}
	defer ro.Close() // the mapping keeps its own reference to the file
	if err := s.remap(ro, unix.PROT_READ); err != nil {
		return fmt.Errorf("freeze segment: %w", err)
	}
	if _, err := unix.FcntlInt(s.res.f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		err = fmt.Errorf("freeze segment: %w", os.NewSyscallError("fcntl", err))
		if errors.Is(err, unix.EBUSY) {
			err = fmt.Errorf("%w (another process maps it writable: freeze before sharing)", err)
		}
		// Put the writable view back so that the failure changes nothing.
		return errors.Join(err, s.remap(s.res.f, unix.PROT_READ|unix.PROT_WRITE))
	}
	s.frozen = true
	return nil
}

// remap replaces the whole mapping in place with one of f using prot, so that
// every slice into it stays valid.
func (s *Segment) remap(f *os.File, prot int) error {
	mem := s.res.mem
	addr := mappingAddr(mem)
	got, err := unix.MmapPtr(int(f.Fd()), 0, addr, uintptr(len(mem)), prot, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	if got != addr {
		panic("shm: invariant violated: MAP_FIXED mapped at another address")
	}
	return nil
}

// madvise is unix.Madvise; tests swap it to make populating fail with
// ENOMEM, which a test cannot otherwise provoke without starving the
// machine.
var madvise = unix.Madvise

// prefaultMin is the size from which mappings are populated up front:
// smaller ones (a pool worker's 2 MiB of rings) are cheaper to fault in as
// they are used than to populate whole when a worker starts.
const prefaultMin = 4 << 20

// prefault asks the kernel to fault in every page of a large mapping now
// (madvise(2) MADV_POPULATE_WRITE for a new segment, MADV_POPULATE_READ for
// an attached one; Linux 5.14+). One call replaces a page fault per 4 KiB on
// first touch (measured here: filling a fresh 16 MiB segment took 23 ms page
// by page, mostly faults), and a memory limit shows up here as ENOMEM,
// with an error to return, instead of as SIGBUS on some later write.
// Populating for read only maps pages that exist, so it allocates nothing.
// Older kernels reject the advice (EINVAL): pages then fault in lazily.
func prefault(mem []byte, write bool) error {
	if len(mem) < prefaultMin {
		return nil
	}
	advice := unix.MADV_POPULATE_READ
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	err := madvise(mem, advice)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return os.NewSyscallError("madvise", err)
}
