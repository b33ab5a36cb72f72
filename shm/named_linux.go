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
// name, or the name holds anything but a regular file of this user with mode
// 0600 (a symlink, a FIFO, someone else's file), it returns an error
// wrapping os.ErrExist and leaves the file alone. Prefer New for anything a
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
	if errors.Is(err, os.ErrExist) {
		reclaimed, rerr := reclaimStale(path)
		if rerr != nil {
			return nil, fmt.Errorf("create named segment: %w: %w (remove it if no mproc process uses it)", os.ErrExist, rerr)
		}
		if reclaimed {
			f, err = createExclusive(path)
		}
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

// namedFlags open a named segment without following a symlink planted at
// its name, and without blocking on a FIFO there (open(2): opening a FIFO
// for reading blocks until a writer comes); ownedSegmentFile then refuses
// anything but a regular file.
const namedFlags = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

func createExclusive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|namedFlags, 0o600)
	if err != nil {
		return nil, err
	}
	// The umask may have taken bits off 0600; set it exactly, so that
	// OpenNamed and reclaimStale recognise the file as ours.
	if err := unix.Fchmod(int(f.Fd()), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("chmod %s: %w", path, os.NewSyscallError("fchmod", err)), f.Close(), os.Remove(path))
	}
	return f, nil
}

// openNamed opens an existing named segment file and checks that it is
// ours.
func openNamed(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|namedFlags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link, not a segment file: %w", path, err)
		}
		return nil, err
	}
	if err := ownedSegmentFile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// ownedSegmentFile checks that f is what CreateNamed makes: a regular file
// owned by this user with mode 0600. Anything else at the name (a FIFO, a
// device, a file another user or a wider mode left there) is not used.
func ownedSegmentFile(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is a %s, not a regular file: %w", f.Name(), fileType(st.Mode), ErrBadMagic)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%s belongs to uid %d, not to this process's uid %d: %w", f.Name(), st.Uid, uid, os.ErrPermission)
	}
	if perm := st.Mode & 0o7777; perm != 0o600 {
		return fmt.Errorf("%s has mode %#o, want 0600 as CreateNamed makes it: %w", f.Name(), perm, os.ErrPermission)
	}
	return nil
}

// fileType names the file type bits of a stat mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}

// reclaimStale removes the file at path if it is a segment file of ours
// and no live process holds its creator's lock, and reports whether it did
// (or the file was gone already). It returns an error for a file that is
// not ours to reclaim. It locks the file before removing it and checks that
// the path still names the file it locked, so two processes reclaiming at
// once never remove each other's new file.
func reclaimStale(path string) (bool, error) {
	f, err := openNamed(path, os.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return true, nil // gone already: retry the create
		}
		return false, err
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, nil // the creator (or a reclaimer) is alive
	}
	var locked, current unix.Stat_t
	if unix.Fstat(int(f.Fd()), &locked) != nil || unix.Lstat(path, &current) != nil {
		return false, nil
	}
	if locked.Dev != current.Dev || locked.Ino != current.Ino {
		return true, nil // replaced by a new file meanwhile: let the create report on it
	}
	if locked.Size < HeaderSize {
		// A creator between O_EXCL and flock looks the same as one that
		// died there; leave it (the create reports os.ErrExist).
		return false, nil
	}
	return os.Remove(path) == nil, nil
}

// OpenNamed attaches the segment another process created with CreateNamed.
// It uses only a regular file owned by this user with mode 0600: a symlink,
// a FIFO or a file someone else made at the name gives an error (wrapping
// ErrBadMagic or os.ErrPermission) without blocking. The header is validated
// as in Attach. Close unmaps it but leaves the file:
// only the creator's Close removes it.
func OpenNamed(name string) (*Segment, error) {
	path, err := namedPath(name)
	if err != nil {
		return nil, err
	}
	f, err := openNamed(path, os.O_RDWR)
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
