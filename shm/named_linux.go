package shm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// shmDir is where named segments live (a tmpfs on Linux).
const shmDir = "/dev/shm"

func namedPath(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("shm: named segment needs a non-empty name: %w", os.ErrInvalid)
	}
	if err := validName(name); err != nil {
		return "", err
	}
	return shmDir + "/" + namePrefix + "-" + name, nil
}

// CreateNamed creates a segment at /dev/shm/mproc-<name>, for processes that
// do not descend from each other to meet by name (OpenNamed). The file is
// created with O_EXCL and mode 0600 and removed by Close. The creator holds
// a lock on the file for as long as it keeps it open; if a previous creator
// of the same name died without closing (kill -9), its file is stale and
// CreateNamed removes it and starts afresh. If a live process holds the
// name, it returns an error wrapping os.ErrExist. Prefer New for anything a
// parent hands to its children: a memfd leaves nothing behind on a crash,
// while a named file stays until Close or the next CreateNamed.
func CreateNamed(name string, size int) (*Segment, error) {
	path, err := namedPath(name)
	if err != nil {
		return nil, err
	}
	if err := checkSize(size); err != nil {
		return nil, err
	}
	f, err := createExclusive(path)
	if errors.Is(err, os.ErrExist) && reclaimStale(path) {
		f, err = createExclusive(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create named segment: %w", err)
	}
	r := &resources{f: f}
	// The exclusive lock marks the file as in use by a live creator; the
	// kernel drops it when the last descriptor of this open file goes away,
	// including when the process is killed (flock(2)). It is taken before
	// the file grows past zero bytes, so a reclaimer that sees a full-sized
	// file without a lock knows its creator is gone. If it fails, a
	// reclaimer took the file for stale in that window: the path may
	// already name someone else's file, so it is not removed.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, errors.Join(fmt.Errorf("lock named segment: %w", os.NewSyscallError("flock", err)), r.release(false))
	}
	r.path = path
	if err := unix.Ftruncate(int(f.Fd()), int64(HeaderSize+size)); err != nil {
		return nil, errors.Join(fmt.Errorf("size named segment: %w", os.NewSyscallError("ftruncate", err)), r.release(false))
	}
	return mapNew(r, size, flagNamed, 0, 0)
}

func createExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// reclaimStale removes the file at path if no live process holds its
// creator's lock, and reports whether it did. It locks the file before
// removing it and checks that the path still names the file it locked, so
// two processes reclaiming at once never remove each other's new file.
func reclaimStale(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Is(err, os.ErrNotExist) // gone already: retry the create
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false // the creator (or a reclaimer) is alive
	}
	var locked, current unix.Stat_t
	if unix.Fstat(int(f.Fd()), &locked) != nil || unix.Lstat(path, &current) != nil {
		return false
	}
	if locked.Dev != current.Dev || locked.Ino != current.Ino {
		return true // replaced by a new file meanwhile: let the create report on it
	}
	if locked.Size < HeaderSize {
		// A creator between O_EXCL and flock looks the same as one that
		// died there; leave it (the create reports os.ErrExist).
		return false
	}
	return os.Remove(path) == nil
}

// OpenNamed attaches the segment another process created with CreateNamed.
// The header is validated as in Attach. Close unmaps it but leaves the file:
// only the creator's Close removes it.
func OpenNamed(name string) (*Segment, error) {
	path, err := namedPath(name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open named segment: %w", err)
	}
	s, err := attach(f, false)
	if err != nil {
		return nil, fmt.Errorf("open named segment %s: %w", path, err)
	}
	if s.hdr.Flags&flagNamed == 0 {
		return nil, errors.Join(fmt.Errorf("open named segment %s: %w: not created by CreateNamed", path, ErrBadHeader), s.Close())
	}
	return s, nil
}
