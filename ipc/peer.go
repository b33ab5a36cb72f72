package ipc

import (
	"os"
	"sync"
	"sync/atomic"
)

// peerRef names the process at the other end of a Ring. The pid and its start
// time form one immutable peerID published through an atomic pointer, so a
// dead check racing with set sees the old pair or the new one, never one
// process's pid with another's start time (which would read as a death).
// That holds by construction (the type offers no way to update half a
// pair), so no test tries to catch a torn pair.
type peerRef struct {
	id atomic.Pointer[peerID] // nil: no peer set
}

// peerID identifies a process across pid reuse: a recycled pid has another
// start time.
type peerID struct {
	pid   int
	start uint64 // /proc/<pid>/stat field 22, clock ticks since boot
}

// A peerID packs into one 64-bit word of shared memory (a Queue's consumer),
// so that a reader in another process never sees half of an update: the pid
// in the top bits (below PID_MAX_LIMIT, 1<<22) and the low startBits bits of
// the start time, which at 100 ticks a second cover over a thousand years of
// uptime. Start times are compared in those bits only.
const (
	startBits = 42
	startMask = 1<<startBits - 1
	pidLimit  = 1 << (64 - startBits)
)

// word packs id; 0 (no process) when the pid does not fit.
func (id peerID) word() uint64 {
	if id.pid <= 0 || id.pid >= pidLimit {
		return 0
	}
	return uint64(id.pid)<<startBits | id.start&startMask
}

// peerFromWord unpacks a word that word made; nil for 0.
func peerFromWord(w uint64) *peerID {
	if w == 0 {
		return nil
	}
	return &peerID{pid: int(w >> startBits), start: w & startMask}
}

// selfWord is this process's packed identity, or 0 if /proc cannot tell its
// start time (then nobody can check its liveness either).
var selfWord = sync.OnceValue(func() uint64 {
	pid := os.Getpid()
	st, ok := procStart(pid)
	if !ok {
		return 0
	}
	return peerID{pid: pid, start: st}.word()
})

func (p *peerRef) set(pid int) {
	if pid <= 0 {
		p.id.Store(nil)
		return
	}
	st, ok := procStart(pid)
	if !ok {
		st = ^uint64(0) // already gone: never matches
	}
	p.id.Store(&peerID{pid: pid, start: st})
}

// setID names the peer by a known identity; nil clears it.
func (p *peerRef) setID(id *peerID) { p.id.Store(id) }

// dead reports whether a peer is set and has exited.
func (p *peerRef) dead() bool {
	id := p.id.Load()
	if id == nil {
		return false
	}
	st, ok := procStart(id.pid)
	return !ok || (st^id.start)&startMask != 0
}

// processAlive reports whether pid names a live (non-zombie) process.
func processAlive(pid int) bool {
	_, ok := procStart(pid)
	return ok
}
