package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// kernelRelease returns uname(2)'s release field, e.g. "6.18.0".
func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", os.NewSyscallError("uname", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
