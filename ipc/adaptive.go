package ipc

import "time"

// adaptiveSpin learns how long one side of a Ring should poll before it
// sleeps, from how long its recent waits lasted. Polling pays only when the
// peer answers within the poll: then a hand-off costs well under a
// microsecond instead of a futex wake (tens of µs on a VM). When waits are
// long (a worker computing for a millisecond), every poll is CPU taken from
// processes that need it, on a machine whose CPUs are all busy, so the
// budget halves after each long wait. A fixed share of waits (one in
// probeEvery) polls for the full budget, so that a peer that speeds up again
// is noticed even after the budget fell to the floor: two sleeping peers
// would otherwise each see only slow, futex-woken waits and never poll again.
//
// Its fields are touched only by the one goroutine that owns that side of the
// ring, so they are plain.
type adaptiveSpin struct {
	budget time.Duration
	waits  uint32
}

const (
	minSpin    = 2 * time.Microsecond
	probeEvery = 16
	// fastPolls is how many bare checks precede the timed, PAUSEd poll:
	// about a microsecond, a few cross-core hand-offs.
	fastPolls = 1024
)

// next returns how long the coming wait may poll, given the ring's maximum.
func (a *adaptiveSpin) next(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	a.waits++
	if a.budget == 0 || a.waits%probeEvery == 0 {
		return limit // first wait, or a probe
	}
	return min(a.budget, limit)
}

// record learns from a wait that lasted waited.
func (a *adaptiveSpin) record(waited, limit time.Duration) {
	if waited <= limit {
		// Polling twice as long as this wait would have caught it.
		a.budget = min(limit, max(a.budget, 2*waited, minSpin))
		return
	}
	a.budget = max(a.budget/2, minSpin)
}

// Poller polls a condition the way a Ring's waits do before they sleep
// (bare loads, then PAUSE, then yielding polls), for a budget it learns
// from its recent polls as a Ring side does. It is for a consumer that
// waits for a ring's message by other means than the Ring's own calls (a
// caller watching for its result while a collector sleeps, say) and must
// not poll longer than the answer is worth. The zero Poller polls for
// defaultSpin at most; one goroutine at a time uses it.
type Poller struct {
	as adaptiveSpin
}

// Poll polls ready until it reports true (Poll returns true) or the
// budget is spent (false). A poll that fails counts as a wait longer than
// any poll, so failures halve the budget as a Ring side's long waits do.
func (p *Poller) Poll(ready func() bool) bool {
	for range fastPolls {
		if ready() {
			return true
		}
	}
	start := time.Now()
	if spinUntil(p.as.next(defaultSpin), ready) {
		p.as.record(time.Since(start), defaultSpin)
		return true
	}
	p.as.record(2*defaultSpin, defaultSpin)
	return false
}
