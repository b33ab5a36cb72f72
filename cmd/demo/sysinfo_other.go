//go:build !linux

package main

import (
	"errors"
	"fmt"
)

// kernelRelease is only implemented on Linux.
func kernelRelease() (string, error) {
	return "", fmt.Errorf("kernel release: %w", errors.ErrUnsupported)
}
