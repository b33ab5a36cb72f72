package kde

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Point is one result of a width sweep: the estimate P at the sweep's point
// for window width H. It is plain data, so it crosses process boundaries as
// raw bytes.
type Point struct {
	H, P float64
}

// Sweep estimates the density at x for every width in widths, one after the
// other, and returns the (h, p) pairs ordered by h (stable for equal widths).
// Sweeps over consecutive ranges of ascending widths concatenate to the
// sweep over the whole range, bit for bit: that is how a sweep is split
// into tasks for goroutines or worker processes.
func Sweep(samples, x, widths []float64, k Kernel) ([]Point, error) {
	if err := checkSweep(samples, x, widths, k); err != nil {
		return nil, err
	}
	out := make([]Point, len(widths))
	for i, h := range widths {
		out[i] = Point{H: h, P: mustEstimate(samples, x, h, k)}
	}
	sortPoints(out)
	return out, nil
}

// SweepGoroutines is Sweep with the widths shared out among workers
// goroutines (workers <= 0 means runtime.GOMAXPROCS(0)); each goroutine takes
// the next unclaimed width, so uneven widths balance. The result is
// bit-identical to Sweep's.
func SweepGoroutines(samples, x, widths []float64, k Kernel, workers int) ([]Point, error) {
	if err := checkSweep(samples, x, widths, k); err != nil {
		return nil, err
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(widths))
	out := make([]Point, len(widths))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(widths) {
					return
				}
				out[i] = Point{H: widths[i], P: mustEstimate(samples, x, widths[i], k)}
			}
		})
	}
	wg.Wait()
	sortPoints(out)
	return out, nil
}

// checkSweep validates everything a sweep's estimates would, once, so the
// workers cannot fail halfway.
func checkSweep(samples, x, widths []float64, k Kernel) error {
	if k != Hypercube && k != Gaussian {
		return fmt.Errorf("sweep: %v: %w", k, ErrKernel)
	}
	for _, h := range widths {
		if err := check(samples, x, h); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	if len(widths) == 0 {
		return check(samples, x, 1)
	}
	return nil
}

// mustEstimate is Estimate for inputs checkSweep has accepted.
func mustEstimate(samples, x []float64, h float64, k Kernel) float64 {
	p, err := Estimate(samples, x, h, k)
	if err != nil {
		panic("kde: invariant broken: checked sweep input rejected: " + err.Error())
	}
	return p
}

func sortPoints(ps []Point) {
	slices.SortStableFunc(ps, func(a, b Point) int { return cmp.Compare(a.H, b.H) })
}

// Linspace returns num evenly spaced values from start to stop inclusive,
// computed exactly as numpy.linspace(start, stop, num) computes them:
// start + i*((stop-start)/(num-1)), with the last value set to stop.
// num <= 0 gives an empty slice, num == 1 gives [start].
func Linspace(start, stop float64, num int) []float64 {
	if num <= 0 {
		return []float64{}
	}
	out := make([]float64, num)
	if num == 1 {
		out[0] = start
		return out
	}
	div := float64(num - 1)
	step := (stop - start) / div
	for i := range out {
		if step == 0 {
			out[i] = float64(i)/div*(stop-start) + start
		} else {
			out[i] = float64(i)*step + start
		}
	}
	out[num-1] = stop
	return out
}

// Arange returns the values start, start+step, ... below stop (above it for
// a negative step), computed exactly as numpy.arange(start, stop, step)
// computes them: ceil((stop-start)/step) values, the i-th being
// start + i*((start+step)-start) from the third on. So Arange(0.1, 1.3, 0.1)
// has 12 values, the third of which is 0.30000000000000004, as in numpy.
// A zero or NaN step, or an empty range, gives an empty slice.
func Arange(start, stop, step float64) []float64 {
	n := math.Ceil((stop - start) / step)
	if !(n > 0) || step == 0 {
		return []float64{}
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32 // numpy would fail to allocate; stay bounded
	}
	out := make([]float64, int(n))
	out[0] = start
	if len(out) > 1 {
		out[1] = start + step
		delta := out[1] - start
		for i := 2; i < len(out); i++ {
			out[i] = start + float64(i)*delta
		}
	}
	return out
}
