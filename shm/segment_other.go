//go:build !linux

package shm

import (
	"errors"
	"fmt"
	"os"
)

// errNoMemfd is what every constructor returns off Linux: segments are
// memfd_create(2) files, which only Linux has.
var errNoMemfd = fmt.Errorf("shm: shared memory segments need Linux memfd_create: %w", errors.ErrUnsupported)

// New creates an anonymous segment; it is supported only on Linux.
func New(name string, size int) (*Segment, error) { return nil, errNoMemfd }

func create(name string, size int, elemSize, elemType uint64) (*Segment, error) {
	return nil, errNoMemfd
}

// OpenFD attaches an inherited segment descriptor; it is supported only on
// Linux. It takes ownership of fd and closes it.
func OpenFD(fd int) (*Segment, error) {
	if fd >= 0 {
		os.NewFile(uintptr(fd), "segment").Close()
	}
	return nil, errNoMemfd
}

// Attach maps a received segment descriptor; it is supported only on Linux.
// It takes ownership of f and closes it.
func Attach(f *os.File) (*Segment, error) {
	if f != nil {
		f.Close()
	}
	return nil, errNoMemfd
}

// CreateNamed creates a named segment; it is supported only on Linux.
func CreateNamed(name string, size int) (*Segment, error) { return nil, errNoMemfd }

// OpenNamed attaches a named segment; it is supported only on Linux.
func OpenNamed(name string) (*Segment, error) { return nil, errNoMemfd }

// Freeze makes the segment read-only; it is supported only on Linux.
func (s *Segment) Freeze() error { return errNoMemfd }
