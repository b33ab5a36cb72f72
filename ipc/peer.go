package ipc

import "sync/atomic"

// peerRef names the process at the other end of a Ring: the pid and its
// start time, so a recycled pid does not read as alive.
type peerRef struct {
	pid   atomic.Int64 // 0: no peer set
	start atomic.Uint64
}

func (p *peerRef) set(pid int) {
	if pid <= 0 {
		p.pid.Store(0)
		return
	}
	st, ok := procStart(pid)
	if !ok {
		st = ^uint64(0) // already gone: never matches
	}
	p.start.Store(st)
	p.pid.Store(int64(pid))
}

// dead reports whether a peer is set and has exited.
func (p *peerRef) dead() bool {
	pid := p.pid.Load()
	if pid == 0 {
		return false
	}
	st, ok := procStart(int(pid))
	return !ok || st != p.start.Load()
}

// processAlive reports whether pid names a live (non-zombie) process.
func processAlive(pid int) bool {
	_, ok := procStart(pid)
	return ok
}
