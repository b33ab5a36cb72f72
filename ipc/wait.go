package ipc

import (
	"context"
	"time"
)

const (
	lineSize = 64 // cache line; layouts keep words of different writers on different lines

	// defaultSpin is how long a blocked call polls before it sleeps on a
	// futex. On this class of machine a futex wake of an idle vCPU costs
	// ~57 µs per hop, a spin hand-off under 1 µs; polling a little under that
	// wake cost keeps a steady stream on the fast path while an idle waiter
	// stops burning CPU within tens of microseconds. It is a time, not an
	// iteration count, so it means the same on every CPU.
	defaultSpin = 50 * time.Microsecond

	// pauseSpin is the part of the spin spent in a tight PAUSE loop before
	// switching to yielding polls.
	pauseSpin = 10 * time.Microsecond

	// sleepSlice bounds one futex sleep, so that a sleeper re-checks the
	// closed flag, its peer's liveness and its context even if a wake is lost
	// (a peer died between publishing and waking).
	sleepSlice = 100 * time.Millisecond

	// spinCheckEvery is how many PAUSEs pass between clock reads while
	// spinning (a clock read costs ~25 ns, a PAUSE ~40 ns on recent Xeons).
	spinCheckEvery = 32
)

// await blocks until ready reports true and returns nil, or returns ctx's
// error, check's, or the futex's. Every blocking call of the package waits
// through it (Ring.Put and Get, Queue's Put and Get, Semaphore.Wait,
// Notifier.Wait), and this is the one order they all keep:
//
//  1. Poll ready. With an adaptive budget (a Ring side): first fastPolls
//     bare polls, then up to as.next(limit), and the wait's length is
//     recorded; without one, for limit. Polling makes no system call.
//  2. Then loop:
//     a. ctx done, or its deadline passed: return ctx's error;
//     b. check(timedOut) fails (a dead peer, say): return its error;
//     c. prepare: announce the sleep and take the key;
//     d. ready: take the announcement back and return nil;
//     e. once, register a context.AfterFunc that wakes ev when ctx is done;
//     f. sleep on the key for a slice: at most sleepSlice, cut at ctx's
//     deadline (timedOut tells check the slice ran out);
//     g. ready: return nil.
//
// Steps c then d are the waiter's half of Dekker's protocol (see
// eventWords): whatever a waker publishes before its notify, ready either
// sees at d or the sleep at f does not happen. A waker's flag (closed,
// detached) must therefore be part of ready, not only of check.
//
// Before await returns, the AfterFunc is stopped and, if it has started,
// awaited: no wake of ev from this call runs after it returns, so a caller
// that leaves a gate (see gate) may let the memory of ev be unmapped.
//
// ready and check do not escape, so on the polling path await allocates
// nothing; registering the AfterFunc allocates.
func await(ctx context.Context, ev *eventWords, limit time.Duration, as *adaptiveSpin,
	ready func() bool, check func(timedOut bool) error) error {
	return pollThen(limit, as, ready, func() error { return sleepUntil(ctx, ev, ready, check) })
}

// pollThen is step 1 of await: it polls ready and, if that stays false,
// returns block's result; with as, it records how long the wait took.
// Ring.AwaitReadable blocks its own way after the same polling.
func pollThen(limit time.Duration, as *adaptiveSpin, ready func() bool, block func() error) error {
	if as == nil {
		if spinUntil(limit, ready) {
			return nil
		}
		return block()
	}
	if limit > 0 {
		// A peer that is awake answers within a few hundred ns. Catch that
		// with bare loads (the line stays in this core's cache until the
		// peer writes it) before paying for clock reads and PAUSE, which
		// would each add tens of ns to the hand-off.
		for range fastPolls {
			if ready() {
				return nil
			}
		}
	}
	start := time.Now()
	var err error
	if !spinUntil(as.next(limit), ready) {
		err = block()
	}
	as.record(time.Since(start), limit)
	return err
}

// sleepUntil is step 2 of await.
func sleepUntil(ctx context.Context, ev *eventWords, ready func() bool, check func(timedOut bool) error) error {
	var stop func() bool
	var fired chan struct{}
	defer func() {
		if stop != nil && !stop() {
			<-fired // the wake is running: it touches ev, so let it finish
		}
	}()
	timedOut := false
	for {
		if err := ctxErr(ctx); err != nil {
			return err
		}
		if check != nil {
			if err := check(timedOut); err != nil {
				return err
			}
		}
		key := ev.prepare()
		if ready() {
			ev.cancel(key)
			return nil
		}
		if stop == nil && ctx.Done() != nil {
			f := make(chan struct{})
			fired = f
			stop = context.AfterFunc(ctx, func() {
				ev.wakeAll()
				close(f)
			})
		}
		d, _ := sliceFor(ctx)
		err := ev.sleep(key, d)
		timedOut = err == errTimedOut
		if err != nil && !timedOut {
			return err
		}
		if ready() {
			return nil
		}
	}
}

// sliceFor returns how long the next sleep may last: sleepSlice, cut short by
// ctx's deadline. ok is false once the deadline has passed.
func sliceFor(ctx context.Context) (d time.Duration, ok bool) {
	d = sleepSlice
	if dl, has := ctx.Deadline(); has {
		left := time.Until(dl)
		if left <= 0 {
			return 0, false
		}
		d = min(d, left)
	}
	return d, true
}

// ctxErr returns ctx's error, or DeadlineExceeded once its deadline passed
// even if the context's timer has not fired yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := sliceFor(ctx); !ok {
		return context.DeadlineExceeded
	}
	return nil
}

// spinUntil polls cond for at most d and reports whether cond became true.
// For the first pauseSpin it polls with PAUSE in between; after that it
// yields the CPU between polls (sched_yield), so that when cores are
// oversubscribed the peer it waits for can run on this CPU instead of
// waiting for the spinner's time slice to end.
func spinUntil(d time.Duration, cond func() bool) bool {
	if d <= 0 {
		return cond()
	}
	start := time.Now()
	yield := false
	for i := 1; ; i++ {
		if cond() {
			return true
		}
		if yield {
			osYield()
		} else {
			cpuRelax()
		}
		if yield || i%spinCheckEvery == 0 {
			e := time.Since(start)
			if e > d {
				return cond()
			}
			yield = e > pauseSpin
		}
	}
}
