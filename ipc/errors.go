package ipc

import (
	"errors"
	"fmt"
	"os"
)

var (
	// ErrTooLarge is returned by Put and TryPut for a message longer than the
	// ring's MaxMessage. Nothing is written; split the message or configure a
	// larger MaxMessage.
	ErrTooLarge = errors.New("ipc: message larger than the ring's MaxMessage")

	// ErrFull is returned by TryPut when the ring has no room for the message
	// now. Retry later, or use Put to block until the consumer makes room.
	ErrFull = errors.New("ipc: ring full")

	// ErrEmpty is returned by TryGet when no committed message is waiting.
	ErrEmpty = errors.New("ipc: ring empty")

	// ErrPeerDied is returned by a blocked Put or Get when the process named
	// with SetPeer has exited (for a Queue's Put, the consuming process). A
	// Get returns it only after every message the peer committed has been
	// delivered.
	ErrPeerDied = errors.New("ipc: peer process died")

	// ErrCorrupt is returned when shared memory holds values no correct peer
	// writes (a bad header on attach, positions out of range, a record that
	// crosses the ring). The memory must be discarded and rebuilt; a Queue
	// consumer sets only the damaged lane aside and serves the others.
	ErrCorrupt = errors.New("ipc: shared memory corrupt")

	// ErrLayout is returned by a constructor whose memory is too small or not
	// 64-byte aligned, or whose configuration is out of range.
	ErrLayout = errors.New("ipc: bad memory layout or configuration")

	// ErrNoLane is returned by a Queue producer when every lane is owned by a
	// live process. Configure more QueueConfig.Producers.
	ErrNoLane = errors.New("ipc: no free queue lane")
)

// errDetached is what calls on a Queue return once its memory is being let
// go in this process. It wraps os.ErrClosed.
var errDetached = fmt.Errorf("ipc: queue detached in this process; attach it again (UnmarshalBinary) to use it: %w", os.ErrClosed)
