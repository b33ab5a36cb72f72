package kde

import (
	"context"
	"fmt"

	"github.com/mproc/mproc/pool"
	"github.com/mproc/mproc/shm"
)

// widthTask is one width of a pool sweep. The samples travel as a shared
// array handle (a segment id), never as data: every worker reads the one
// frozen copy in place, where Python's Pool pickles the array into each task.
type widthTask struct {
	Samples *shm.Array[float64]
	X       []float64
	H       float64
	Kernel  Kernel
}

// estimateTask runs in a worker process.
var estimateTask = pool.Register("mproc/kde.estimate", func(t widthTask) (Point, error) {
	if t.Samples == nil {
		return Point{}, fmt.Errorf("estimate task: no samples: %w", ErrNoSamples)
	}
	p, err := Estimate(t.Samples.Slice(), t.X, t.H, t.Kernel)
	return Point{H: t.H, P: p}, err
})

// ShareSamples copies samples once into a new shared-memory array and
// freezes it read-only, ready for SweepPool. The caller owns the array and
// closes it when no sweep needs it any more.
func ShareSamples(samples []float64) (*shm.Array[float64], error) {
	a, err := shm.NewArray[float64](len(samples))
	if err != nil {
		return nil, fmt.Errorf("share samples: %w", err)
	}
	copy(a.Slice(), samples)
	if err := a.Freeze(); err != nil {
		a.Close()
		return nil, fmt.Errorf("share samples: %w", err)
	}
	return a, nil
}

// SweepPool is Sweep with the widths evaluated by the worker processes of p,
// one task per width (the pool batches them), reading samples in place from
// shared memory. The result is bit-identical to Sweep's. It returns the
// pool's *pool.TaskError or *pool.WorkerError if a worker fails, and ctx's
// error if ctx ends first. opts go to the pool.Map call (pool.Progress, say).
func SweepPool(ctx context.Context, p *pool.Pool, samples *shm.Array[float64], x, widths []float64, k Kernel, opts ...pool.CallOption) ([]Point, error) {
	if samples == nil {
		return nil, fmt.Errorf("sweep: %w", ErrNoSamples)
	}
	if err := checkSweep(samples.Slice(), x, widths, k); err != nil {
		return nil, err
	}
	tasks := make([]widthTask, len(widths))
	for i, h := range widths {
		tasks[i] = widthTask{Samples: samples, X: x, H: h, Kernel: k}
	}
	out, err := pool.Map(ctx, p, estimateTask, tasks, opts...)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	sortPoints(out)
	return out, nil
}

// SweepNewPool is the seed's multiprocess(): it starts a pool of workers
// processes, shares the samples, runs SweepPool and closes the pool, all of
// which the caller's timing includes. It returns the sweep, or the first
// error of those steps. opts go to SweepPool.
func SweepNewPool(ctx context.Context, workers int, samples, x, widths []float64, k Kernel, opts ...pool.CallOption) (out []Point, err error) {
	p, err := pool.New(&pool.Config{Workers: workers})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := p.Close(); err == nil {
			err = cerr
		}
	}()
	shared, err := ShareSamples(samples)
	if err != nil {
		return nil, err
	}
	defer shared.Close()
	return SweepPool(ctx, p, shared, x, widths, k, opts...)
}
