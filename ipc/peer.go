package ipc

import "sync/atomic"

// peerRef names the process at the other end of a Ring. The pid and its start
// time form one immutable peerID published through an atomic pointer, so a
// dead check racing with set sees the old pair or the new one, never one
// process's pid with another's start time (which would read as a death).
type peerRef struct {
	id atomic.Pointer[peerID] // nil: no peer set
}

// peerID identifies a process across pid reuse: a recycled pid has another
// start time.
type peerID struct {
	pid   int
	start uint64 // /proc/<pid>/stat field 22, clock ticks since boot
}

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

// dead reports whether a peer is set and has exited.
func (p *peerRef) dead() bool {
	id := p.id.Load()
	if id == nil {
		return false
	}
	st, ok := procStart(id.pid)
	return !ok || st != id.start
}

// processAlive reports whether pid names a live (non-zombie) process.
func processAlive(pid int) bool {
	_, ok := procStart(pid)
	return ok
}
