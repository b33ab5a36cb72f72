package pool

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// transport makes the task/result channel between the parent and one
// worker. The pool core talks only to link and transport, so another
// carrier (a network message bus, say) can be added without any change
// visible to users.
type transport interface {
	// pair creates the channel for one worker: the parent's end, the files
	// the child must inherit (after its control socket) and a spec string
	// that openLink in the child turns into the child's end.
	pair(worker int) (parent link, files []*os.File, spec string, err error)
}

// openLink opens the child's end of a channel from its spec; firstFD is
// the descriptor number of the first inherited transport file.
func openLink(spec string, firstFD int) (link, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "sock":
		return openSockLink(firstFD)
	case "shm":
		return openShmLink(arg)
	}
	return nil, fmt.Errorf("pool: unknown transport %q", spec)
}

// errWouldBlock is returned by link.trySend when sending needs to wait.
var errWouldBlock = errors.New("pool: link would block")
