package ipc

import (
	"context"
	"sync/atomic"
)

// SemaphoreSize is the number of bytes a Semaphore occupies in shared memory.
const SemaphoreSize = 64

const semMagic = 0x4d455353 // "SSEM"

type semLayout struct {
	magic atomic.Uint32
	count atomic.Uint32
	ev    eventWords
	_     [lineSize - 16]byte
}

// Semaphore is a counting semaphore in shared memory, usable by any number of
// goroutines and processes through their own views. Post costs one atomic
// add and one load when nobody sleeps.
type Semaphore struct {
	l *semLayout
}

// NewSemaphore initialises a Semaphore with the given count in mem, which
// must be at least SemaphoreSize bytes, 64-byte aligned and shared with the
// other processes. Do not call it while other views are in use.
func NewSemaphore(mem []byte, initial uint32) (*Semaphore, error) {
	l := view[semLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	l.count.Store(initial)
	l.ev.reset()
	l.magic.Store(semMagic)
	return &Semaphore{l: l}, nil
}

// AttachSemaphore returns a view of the Semaphore NewSemaphore made in mem.
// It fails with ErrCorrupt if mem does not hold one.
func AttachSemaphore(mem []byte) (*Semaphore, error) {
	l := view[semLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	if l.magic.Load() != semMagic {
		return nil, ErrCorrupt
	}
	return &Semaphore{l: l}, nil
}

// Post increments the count and wakes sleeping waiters, if any.
func (s *Semaphore) Post() {
	s.l.count.Add(1)
	s.l.ev.notify()
}

// TryWait decrements the count if it is positive and reports whether it did.
// It never blocks.
func (s *Semaphore) TryWait() bool {
	for {
		c := s.l.count.Load()
		if c == 0 {
			return false
		}
		if s.l.count.CompareAndSwap(c, c-1) {
			return true
		}
	}
}

// Wait decrements the count, blocking while it is zero: it polls for up to
// ~50 µs, then sleeps on the futex in slices of at most 100 ms. It returns
// ctx's error if ctx is done first, without decrementing.
func (s *Semaphore) Wait(ctx context.Context) error {
	if s.TryWait() {
		return nil
	}
	return await(ctx, &s.l.ev, defaultSpin, nil, s.TryWait, nil)
}
