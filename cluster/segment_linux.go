package cluster

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sealedCopy copies size bytes from r into a new memfd and seals it
// against any change (memfd_create(2), fcntl(2) F_ADD_SEALS): shm.Attach
// then maps it read-only, as a frozen segment.
func sealedCopy(label string, r io.Reader, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(label, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "/memfd:"+label)
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, os.NewSyscallError("ftruncate", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("object ended after %d of %d bytes", n, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	// The digest is checked at the end of the object: read past it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		f.Close()
		return nil, err
	}
	const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
