//go:build !linux

package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// sealedCopy needs memfd_create(2): shared inputs reach only Linux nodes.
func sealedCopy(string, io.Reader, int64) (*os.File, error) {
	return nil, fmt.Errorf("cluster: shared inputs on a node: %w", errors.ErrUnsupported)
}
