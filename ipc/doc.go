// Package ipc passes messages between processes through shared memory: a
// futex wrapper, a Semaphore and a Notifier (event count), a bounded
// single-producer single-consumer Ring of variable-length byte messages, and
// a typed many-producer Queue.
//
// The low-level types are views over caller-provided memory, normally a
// sub-slice of a shm.Segment that every participant maps, so several can be
// laid out in one segment (RingSize is a multiple of 64):
//
//	n := ipc.RingSize(nil)
//	mem := seg.Bytes()
//	tasks, _ := ipc.NewRing(mem[:n], nil)      // parent produces
//	results, _ := ipc.NewRing(mem[n:2*n], nil) // worker produces
//	tasks.SetPeer(workerPid)
//	// in the worker, after shm.OpenFD:
//	tasks, _ = ipc.AttachRing(mem[:n])
//	buf, err = tasks.Get(ctx, buf)
//
// Queue[T] owns its segment and travels to other processes by reference
// (MarshalBinary is the segment id), so it can be a pool task argument.
//
// # Ring design
//
// The data area is one contiguous byte ring (as in the BPF ring buffer and
// Aeron's log buffer). Each message is a record: an 8-byte header (length,
// kind) and the payload padded to 8 bytes. A record that does not fit before
// the end of the ring is preceded by a padding record and starts again at
// offset 0, so every payload is contiguous. Producer and consumer keep
// monotonic byte positions (tail, head) on separate cache lines and cache
// each other's position, touching the peer's line only when the cache says
// the ring is full or empty.
//
// Large messages need no separate arena: the ring is the arena. There are
// no fixed slots, a record is exactly as large as its message, and a 64 KiB
// message is one header write and one copy, the same path as a 64-byte one.
// MaxMessage (up to half the ring) is the only limit, and a longer message
// fails with ErrTooLarge, never truncated.
//
// # Crashes
//
// A producer publishes by storing its new tail after writing the record, a
// consumer releases by storing its new head after copying out; a process
// killed at any instruction therefore leaves only whole, committed records
// and never a lock. SetPeer lets a blocked call notice a dead peer
// (ErrPeerDied); a monitor that learns of a death earlier can call Close or
// Wake. Everything read from shared memory is validated: a bad header or
// record gives ErrCorrupt, never a panic or an out-of-range access. A Queue
// reports a corrupt lane once and goes on serving the other lanes.
//
// # Waiting
//
// A blocked call polls for a bounded time (at most 50 µs by default,
// Ring.SetSpin: 10 µs with PAUSE, then yielding the CPU between polls; on a
// Ring the budget adapts to how long recent waits lasted), then sleeps on a
// shared futex in slices of at most 100 ms, re-checking the closed flag, its
// context and its peer after each. Waiters announce themselves in a count
// beside the futex word (Dekker's protocol with sequentially consistent
// atomics), so the other side issues FUTEX_WAKE only when someone may sleep:
// while both sides are awake, Put and Get make no system call and allocate
// nothing. A wake clears the count, and each sleeper announces itself again
// before it sleeps again, so a waiter killed in its sleep costs one wasted
// FUTEX_WAKE, not one per notify forever. Cancelling the context wakes a
// sleeper at once.
//
// # Caveats
//
//   - Views do not keep the memory mapped: the segment must stay open until
//     every view in the process is dropped. Detach in the creating process
//     unmaps a Queue's segment; it first makes calls blocked in any of the
//     process's views of the queue return an error wrapping os.ErrClosed,
//     and waits until none is inside the memory.
//   - A Ring has exactly one producer and one consumer at a time. Two
//     concurrent producers (or consumers) corrupt it; Queue serialises the
//     goroutines of one process with a mutex, shared by every view of the
//     queue in that process.
//   - Queue order is FIFO per producer process and round-robin across
//     producers; there is no order between different producers' messages.
//   - Queue has many producers but one consumer process: the creator, until
//     another process calls Get or TryGet (consuming may be handed from one
//     process to another, not shared). Its pid and start time sit in the
//     queue's header, and a Put blocked on a full lane returns ErrPeerDied
//     within about 100 ms of that process's death. Several consumers that
//     survive each other's death need per-consumer claims that a dead
//     consumer cannot leave half-done; that is not built. A pool-style fan
//     out uses one Ring per worker instead.
//   - A Queue producer keeps its lane until Detach. A lane whose owner pid is
//     dead (or a zombie) is reclaimed by the next process that finds no free
//     lane; a recycled pid keeps the lane looking owned. Producers beyond
//     QueueConfig.Producers live processes get ErrNoLane.
//   - A Ring side polls before it sleeps only as long as its recent waits
//     were short (adaptive, up to SetSpin's limit, 50 µs by default), so a
//     side that waits long for a busy peer stops taking that peer's CPU.
//     SetSpin(0) never polls: the least CPU, the highest latency (a futex
//     wake costs tens of µs on a VM). Semaphore and Notifier poll a fixed
//     50 µs.
//   - Liveness is read from /proc (Linux only); elsewhere sleeping waits
//     fail with an error wrapping errors.ErrUnsupported.
//   - A goroutine asleep in a futex wait holds an OS thread.
package ipc
