package ipc

import (
	"os"
	"sync"
	"testing"
	"time"
)

// TestPeerSetKeepsPairsWhole: while SetPeer switches between two live
// processes, a concurrent liveness check never reports a death, which it
// would if it paired one process's pid with the other's start time.
func TestPeerSetKeepsPairsWhole(t *testing.T) {
	a, b := os.Getpid(), os.Getppid()
	sa, okA := procStart(a)
	sb, okB := procStart(b)
	if !okA || !okB || sa == sb {
		t.Skipf("need two live processes with different start times: %d (%d), %d (%d)", a, sa, b, sb)
	}
	var p peerRef
	p.set(a)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p.set([]int{b, a}[i%2])
		}
	})
	checks, misfires := 0, 0
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); checks++ {
		if p.dead() {
			misfires++
		}
	}
	close(stop)
	wg.Wait()
	if misfires > 0 {
		t.Errorf("dead() = true %d times in %d checks, with both peers alive", misfires, checks)
	}
}

// TestRingWakeReachesEachSide: Wake sets a re-check flag per side, so a
// waiter on one side cannot take the Wake meant for the other.
func TestRingWakeReachesEachSide(t *testing.T) {
	r := mustRing(t, nil)
	r.Wake()
	if !r.getHint.Swap(false) || !r.putHint.Load() {
		t.Errorf("after Wake and the Get side's re-check: getHint, putHint = %v, %v; want the Put side's flag still set",
			r.getHint.Load(), r.putHint.Load())
	}
}

// TestPeerWord: a packed identity names the same process, and one whose
// start time differs (a recycled pid) reads as dead.
func TestPeerWord(t *testing.T) {
	w := selfWord()
	id := peerFromWord(w)
	if id == nil || id.pid != os.Getpid() {
		t.Fatalf("peerFromWord(selfWord()) = %+v, want pid %d", id, os.Getpid())
	}
	var p peerRef
	p.setID(id)
	if p.dead() {
		t.Error("dead() = true for this process")
	}
	p.setID(peerFromWord(w ^ 1))
	if !p.dead() {
		t.Error("dead() = false for this pid with another start time")
	}
	p.setID(peerFromWord(0))
	if p.dead() {
		t.Error("dead() = true with no peer")
	}
}
