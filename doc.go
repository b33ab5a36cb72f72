// Package mproc is Python's multiprocessing model for Go, over shared memory.
//
// Work runs in separate OS processes (so one crashing task cannot take the
// program down), and everything the processes exchange travels through
// memfd-backed shared memory: bounded ring queues for messages, futex
// semaphores living in the same memory for waiting, and typed arrays that
// every worker reads in place.
//
// The packages, from the bottom up:
//
//   - shm: shared-memory segments (memfd_create, sealed, validated header),
//     typed zero-copy arrays, and passing segments to child processes.
//   - ipc: futex wait/wake, semaphores and notifiers in shared memory,
//     single-producer ring buffers of variable-length messages, and a typed
//     many-producer Queue[T] that survives the death of any producer.
//   - pool: the multiprocessing API. Init re-executes the program's own binary
//     as a worker; Register declares typed tasks; Process runs one function in
//     one child; Pool runs Apply, Map, ApplyAsync, MapAsync, Imap and
//     ImapUnordered on workers pinned to the cores this process may use,
//     replacing workers that crash, hang or are killed.
//   - kde: the Parzen-window density estimator used as the benchmark workload.
//
// cmd/demo runs the whole tour: go run ./cmd/demo.
package mproc
