package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/mproc/mproc/internal/fdpass"
	"golang.org/x/sys/unix"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		segName string
		size    int
		wantErr error
	}{
		{name: "empty payload", size: 0},
		{name: "one byte", segName: "one", size: 1},
		{name: "page minus header", segName: "page", size: 4096 - HeaderSize},
		{name: "several pages", segName: "big", size: 3<<20 + 5},
		{name: "negative size", size: -1, wantErr: os.ErrInvalid},
		{name: "slash in name", segName: "a/b", size: 8, wantErr: os.ErrInvalid},
		{name: "overlong name", segName: strings.Repeat("x", maxNameLen+1), size: 8, wantErr: os.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.segName, tt.size)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer s.Close()
			if s.Len() != tt.size || len(s.Bytes()) != tt.size {
				t.Fatalf("Len() = %d, len(Bytes()) = %d, want %d", s.Len(), len(s.Bytes()), tt.size)
			}
			if s.ID() == 0 {
				t.Fatal("ID() = 0, want a nonzero id")
			}
			if b := s.Bytes(); len(b) > 0 {
				b[0], b[len(b)-1] = 1, 2 // the whole payload is mapped and writable
			}
			link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(s.File().Fd())))
			if err != nil || !strings.HasPrefix(link, "/memfd:mproc") {
				t.Fatalf("fd link = %q (%v), want /memfd:mproc...", link, err)
			}
			seals, err := unix.FcntlInt(s.File().Fd(), unix.F_GET_SEALS, 0)
			if err != nil || seals&sizeSeals != sizeSeals {
				t.Fatalf("seals = %#x (%v), want shrink and grow sealed", seals, err)
			}
			if err := s.File().Truncate(1); !errors.Is(err, unix.EPERM) {
				t.Fatalf("Truncate on sealed segment error = %v, want EPERM", err)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s, err := New("close", 16)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	if err := s.Close(); err != nil {
		t.Fatalf("first Close() = %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
	if s.Bytes() != nil || s.File() != nil {
		t.Fatal("Bytes() or File() non-nil after Close")
	}
	if err := s.Freeze(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Freeze() after Close = %v, want os.ErrClosed", err)
	}
	if _, err := Lookup(id); !errors.Is(err, ErrUnknownSegment) {
		t.Fatalf("Lookup(closed) error = %v, want ErrUnknownSegment", err)
	}
}

// dupFile returns a second descriptor for the segment's file, as a child
// would receive it.
func dupFile(tb testing.TB, s *Segment) *os.File {
	tb.Helper()
	fd, err := unix.FcntlInt(s.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return os.NewFile(uintptr(fd), "dup")
}

// memfdWith returns an unregistered memfd holding b, sealed with seals.
func memfdWith(tb testing.TB, b []byte, seals int) *os.File {
	tb.Helper()
	fd, err := unix.MemfdCreate("mproc-test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		tb.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	if _, err := f.Write(b); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	return f
}

func TestAttach(t *testing.T) {
	good := make([]byte, HeaderSize+32)
	h := header{Magic: magic, Version: layoutVersion, ID: 77, Size: 32}
	h.encode(good)
	corrupt := func(i int) []byte { c := bytes.Clone(good); c[i] ^= 0xff; return c }
	tests := []struct {
		name  string
		data  []byte
		seals int
		want  error
	}{
		{name: "valid", data: good, seals: sizeSeals},
		{name: "not sealed", data: good, seals: 0, want: ErrNotSealed},
		{name: "only shrink sealed", data: good, seals: unix.F_SEAL_SHRINK, want: ErrNotSealed},
		{name: "empty file", data: nil, seals: sizeSeals, want: ErrTruncated},
		{name: "header only", data: good[:HeaderSize], seals: sizeSeals, want: ErrTruncated},
		{name: "bad magic", data: corrupt(0), seals: sizeSeals, want: ErrBadMagic},
		{name: "bad version", data: corrupt(8), seals: sizeSeals, want: ErrVersion},
		{name: "bad checksum", data: corrupt(30), seals: sizeSeals, want: ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Attach(memfdWith(t, tt.data, tt.seals))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Attach() error = %v, want %v", err, tt.want)
			}
			if err == nil {
				if s.ID() != 77 || s.Len() != 32 {
					t.Errorf("ID(), Len() = %d, %d, want 77, 32", s.ID(), s.Len())
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestAttachSharesMemory(t *testing.T) {
	s := mustNew(t, "share", 64)
	other, err := Attach(dupFile(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	copy(s.Bytes(), "ping")
	if got := string(other.Bytes()[:4]); got != "ping" {
		t.Fatalf("second mapping reads %q, want ping", got)
	}
	if got, _ := Lookup(s.ID()); got != s {
		t.Fatalf("Lookup() = %p, want the first segment %p", got, s)
	}
}

// TestFreeze checks that a frozen payload stays readable through the old
// slice, faults on write, and cannot be written through a new writable
// mapping or write(2).
func TestFreeze(t *testing.T) {
	s := mustNew(t, "freeze", 4096)
	b := s.Bytes()
	copy(b, parentGreeting)
	if err := s.Freeze(); err != nil {
		t.Fatalf("Freeze() = %v", err)
	}
	if err := s.Freeze(); err != nil {
		t.Fatalf("second Freeze() = %v, want nil", err)
	}
	if got := string(b[:len(parentGreeting)]); got != parentGreeting {
		t.Fatalf("after Freeze old slice reads %q, want %q", got, parentGreeting)
	}
	if !writeFaults(b) {
		t.Fatal("writing a frozen payload did not fault")
	}
	if _, err := unix.Mmap(int(s.File().Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
		t.Fatalf("writable mmap of frozen segment error = %v, want EPERM", err)
	}
	if _, err := s.File().WriteAt([]byte("x"), HeaderSize); !errors.Is(err, unix.EPERM) {
		t.Fatalf("WriteAt on frozen segment error = %v, want EPERM", err)
	}
	ro, err := Attach(dupFile(t, s))
	if err != nil {
		t.Fatalf("Attach(frozen) = %v", err)
	}
	defer ro.Close()
	if !ro.Frozen() {
		t.Fatal("attached frozen segment: Frozen() = false")
	}
}

// writeFaults reports whether writing b[0] faults, using SetPanicOnFault to
// turn the SIGSEGV into a recoverable panic.
func writeFaults(b []byte) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { faulted = recover() != nil }()
	b[0] = 'X'
	return false
}

func TestFreezeRefusedWhileMappedWritable(t *testing.T) {
	s := mustNew(t, "busy", 64)
	writer, err := Attach(dupFile(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if err := s.Freeze(); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Freeze() with another writable mapping = %v, want EBUSY", err)
	}
	if s.Frozen() {
		t.Fatal("Frozen() = true after failed Freeze")
	}
	s.Bytes()[0] = 1 // still writable: the failure changed nothing
	if writer.Bytes()[0] != 1 {
		t.Fatal("write after failed Freeze not shared")
	}
}

func TestCrossProcess(t *testing.T) {
	s := mustNew(t, "cross", 4096)
	copy(s.Bytes(), parentGreeting)
	startChild(t, "echo", s).wait(t)
	want := parentGreeting + childGreeting
	if got := string(s.Bytes()[:len(want)]); got != want {
		t.Fatalf("after child: payload = %q, want %q", got, want)
	}
}

func TestCrossProcessFrozen(t *testing.T) {
	s := mustNew(t, "frozen", 4096)
	copy(s.Bytes(), parentGreeting)
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	startChild(t, "frozen", s).wait(t)
}

// holders lists the processes whose descriptors or mappings refer to the
// memfd labelled label.
func holders(label string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); strings.HasPrefix(l, "/memfd:"+label+" ") {
				out = append(out, fd)
			}
		}
		if maps, _ := os.ReadFile(p + "/maps"); bytes.Contains(maps, []byte("/memfd:"+label+" ")) {
			out = append(out, p+"/maps")
		}
	}
	return out
}

// TestKilledHoldersLeaveNothing shows that a memfd segment disappears when
// its last holder is killed with -9: once the parent has closed its copy and
// the child that maps it is SIGKILLed, no process refers to it, and with no
// name in any file system the kernel frees it.
func TestKilledHoldersLeaveNothing(t *testing.T) {
	name := fmt.Sprintf("kill-%x", rand.Uint64())
	label := namePrefix + "-" + name
	s, err := New(name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "hold", s)
	c.waitReady(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h := holders(label); len(h) == 0 {
		t.Fatal("no process holds the segment while the child runs: the check below could not fail")
	}
	c.kill9(t)
	if h := holders(label); len(h) != 0 {
		t.Fatalf("after kill -9 of every holder, still referenced by %v", h)
	}
}

func TestNamed(t *testing.T) {
	name := fmt.Sprintf("test-%x", rand.Uint64())
	path := "/dev/shm/mproc-" + name
	s, err := CreateNamed(name, 128)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Stat(%s) = %v, %v, want mode 0600", path, fi, err)
	}
	if _, err := CreateNamed(name, 128); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CreateNamed(live name) error = %v, want os.ErrExist", err)
	}
	o, err := OpenNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	copy(s.Bytes(), "named")
	if got := string(o.Bytes()[:5]); got != "named" {
		t.Fatalf("OpenNamed view reads %q, want named", got)
	}
	if err := s.Freeze(); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Freeze(named) = %v, want errors.ErrUnsupported", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file gone after the opener's Close (%v), want it kept until the creator's", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Stat after creator's Close error = %v, want not exist", err)
	}
	if _, err := OpenNamed(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenNamed(removed) error = %v, want os.ErrNotExist", err)
	}
}

// TestNamedCrash is the honest account of a crash: a named file outlives a
// creator killed with -9 (no API can prevent that), and the next CreateNamed
// of the name finds it stale, removes it and succeeds. leakcheck then
// proves no file is left.
func TestNamedCrash(t *testing.T) {
	name := fmt.Sprintf("crash-%x", rand.Uint64())
	path := "/dev/shm/mproc-" + name
	c := startChild(t, "named", nil, "MPROC_SHM_TEST_NAME="+name)
	c.waitReady(t)
	if _, err := CreateNamed(name, 64); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CreateNamed while the creator lives: error = %v, want os.ErrExist", err)
	}
	c.kill9(t)
	t.Cleanup(func() { os.Remove(path) }) // only if the test fails below
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Stat after kill -9 = %v: expected the stale file to still be there", err)
	}
	o, err := OpenNamed(name) // the data survives for a reader
	if err != nil {
		t.Fatal(err)
	}
	if got := string(o.Bytes()[:len(parentGreeting)]); got != parentGreeting {
		t.Fatalf("stale segment reads %q, want %q", got, parentGreeting)
	}
	o.Close()
	s, err := CreateNamed(name, 64)
	if err != nil {
		t.Fatalf("CreateNamed over a stale file = %v, want it reclaimed", err)
	}
	if s.Bytes()[0] != 0 {
		t.Fatal("reclaimed segment is not fresh")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Stat after Close error = %v, want not exist", err)
	}
}

func TestLookupFetch(t *testing.T) {
	s, err := New("fetch", 8)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	parentCopy := dupFile(t, s) // what the parent would send over SCM_RIGHTS
	defer parentCopy.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	fdpass.Fetch = func(want uint64) (*os.File, error) {
		fetches++
		if want != id {
			return nil, fmt.Errorf("parent has no segment %#x", want)
		}
		return os.NewFile(uintptr(must(unix.FcntlInt(parentCopy.Fd(), unix.F_DUPFD_CLOEXEC, 0))), "fetched"), nil
	}
	defer func() { fdpass.Fetch = nil }()

	got, err := Lookup(id)
	if err != nil || got.ID() != id {
		t.Fatalf("Lookup(%#x) = %v, %v, want the fetched segment", id, got, err)
	}
	defer got.Close()
	again, err := Lookup(id)
	if err != nil || again != got || fetches != 1 {
		t.Fatalf("second Lookup = %p, %v after %d fetches, want %p after 1", again, err, fetches, got)
	}
	if _, err := Lookup(id + 1); !errors.Is(err, ErrUnknownSegment) {
		t.Fatalf("Lookup(unknown) error = %v, want ErrUnknownSegment", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLargeSegmentPrefaulted: a segment of prefaultMin or more has every page
// in place when New returns: writing all of it takes (almost) no page faults,
// and a memory limit would have failed New with ENOMEM instead of raising
// SIGBUS on some later write.
func TestLargeSegmentPrefaulted(t *testing.T) {
	s, err := New("prefault", prefaultMin)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.Bytes()
	page := os.Getpagesize()
	runtime.LockOSThread() // the fault counts below are this thread's
	defer runtime.UnlockOSThread()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &before)
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &after)
	pages := len(b) / page
	if faults := after.Minflt - before.Minflt; faults > int64(pages/10) {
		t.Errorf("writing %d pages took %d page faults, want almost none (prefaulted)", pages, faults)
	}
}
