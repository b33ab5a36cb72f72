package kde

import (
	"context"
	"fmt"

	"github.com/mproc/mproc/pool"
	"github.com/mproc/mproc/shm"
)

// widthTask is one width of a pool sweep: a fixed-size value without
// pointers, so the pool's codec copies it as raw bytes instead of encoding
// CBOR (a tenth of the parent's time per sweep at n = 1e4 went to CBOR).
// The samples travel as their shared array's handle (segment id and
// length, shm.Array's binary form), never as data: every worker reads the
// one frozen copy in place, where Python's Pool pickles the array into each
// task. Points of more than maxTaskDims coordinates take wideWidthTask.
type widthTask struct {
	Samples [16]byte
	H       float64
	Kernel  Kernel
	Dims    int
	X       [maxTaskDims]float64
}

// maxTaskDims is the most coordinates a widthTask carries.
const maxTaskDims = 8

// wideWidthTask is widthTask for points of any dimension, encoded as CBOR.
type wideWidthTask struct {
	Samples *shm.Array[float64]
	X       []float64
	H       float64
	Kernel  Kernel
}

// estimateTask and estimateWideTask run in a worker process.
var (
	estimateTask = pool.Register("mproc/kde.estimate", func(t widthTask) (Point, error) {
		var samples shm.Array[float64]
		if err := samples.UnmarshalBinary(t.Samples[:]); err != nil {
			return Point{}, fmt.Errorf("estimate task: %w", err)
		}
		if t.Dims < 1 || t.Dims > maxTaskDims {
			return Point{}, fmt.Errorf("estimate task: %d coordinates, want 1 to %d", t.Dims, maxTaskDims)
		}
		p, err := Estimate(samples.Slice(), t.X[:t.Dims], t.H, t.Kernel)
		return Point{H: t.H, P: p}, err
	})
	estimateWideTask = pool.Register("mproc/kde.estimate-wide", func(t wideWidthTask) (Point, error) {
		if t.Samples == nil {
			return Point{}, fmt.Errorf("estimate task: no samples: %w", ErrNoSamples)
		}
		p, err := Estimate(t.Samples.Slice(), t.X, t.H, t.Kernel)
		return Point{H: t.H, P: p}, err
	})
)

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
	var out []Point
	var err error
	if len(x) <= maxTaskDims {
		task := widthTask{Kernel: k, Dims: len(x)}
		handle, _ := samples.MarshalBinary() // never fails
		copy(task.Samples[:], handle)
		copy(task.X[:], x)
		tasks := make([]widthTask, len(widths))
		for i, h := range widths {
			tasks[i] = task
			tasks[i].H = h
		}
		out, err = pool.Map(ctx, p, estimateTask, tasks, opts...)
	} else {
		tasks := make([]wideWidthTask, len(widths))
		for i, h := range widths {
			tasks[i] = wideWidthTask{Samples: samples, X: x, H: h, Kernel: k}
		}
		out, err = pool.Map(ctx, p, estimateWideTask, tasks, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	sortPoints(out)
	return out, nil
}

// SweepNewPool is the seed's multiprocess(): it starts a pool of workers
// processes, shares the samples (one copy into shared memory), runs
// SweepPool and closes the pool, all of which the caller's timing
// includes. It returns the sweep, or the first error of those steps. opts
// go to SweepPool. Samples that already live in a shared array (see
// NormalSamplesShared) take SweepNewPoolShared, which copies nothing.
func SweepNewPool(ctx context.Context, workers int, samples, x, widths []float64, k Kernel, opts ...pool.CallOption) ([]Point, error) {
	shared, err := ShareSamples(samples)
	if err != nil {
		return nil, err
	}
	defer shared.Close()
	return SweepNewPoolShared(ctx, workers, shared, x, widths, k, opts...)
}

// SweepNewPoolShared is SweepNewPool for samples already in a frozen shared
// array: start the pool, sweep, close it.
func SweepNewPoolShared(ctx context.Context, workers int, samples *shm.Array[float64], x, widths []float64, k Kernel, opts ...pool.CallOption) (out []Point, err error) {
	p, err := pool.New(&pool.Config{Workers: workers})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := p.Close(); err == nil {
			err = cerr
		}
	}()
	return SweepPool(ctx, p, samples, x, widths, k, opts...)
}
