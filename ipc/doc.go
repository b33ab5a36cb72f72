// Package ipc passes messages between processes through shared memory:
// futex-based Semaphore and Notifier, a single-producer single-consumer Ring
// of variable-length byte messages, and a many-producer typed Queue.
//
// The low-level types are views over caller-provided memory, normally a
// sub-slice of a shm.Segment mapped by every participating process, so that
// several of them can be laid out in one segment:
//
//	mem := seg.Bytes()
//	n := ipc.RingSize(nil)
//	tasks, _ := ipc.NewRing(mem[:n], nil)       // parent produces
//	results, _ := ipc.NewRing(mem[n:2*n], nil)  // worker produces
//	// in the worker, after attaching the segment:
//	tasks, _ = ipc.AttachRing(mem[:n])
//	msg, err := tasks.Get(ctx, buf)
//
// # Waiting
//
// A blocked call polls for a bounded time (50 µs by default, SetSpin) and
// then sleeps on a shared futex in slices of at most 100 ms, re-checking the
// closed flag, its context and, if set, its peer's liveness after each. The
// waking side consults a waiters count first, so a Put or Get costs no
// system call while the other side is awake.
//
// # Caveats
//
// Views hold no reference to the memory's owner: the memory must stay mapped
// until every view is dropped. A Ring has one producer and one consumer;
// concurrent producers on one Ring corrupt it.
package ipc
