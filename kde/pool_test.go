package kde

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mproc/mproc/pool"
)

func mustPool(tb testing.TB, workers int) *pool.Pool {
	tb.Helper()
	p, err := pool.New(&pool.Config{Workers: workers})
	if err != nil {
		tb.Fatalf("pool.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return p
}

func TestSweepPoolBitIdentical(t *testing.T) {
	samples := mustSamples(t, 10000, []float64{0, 0}, []float64{1, 0, 0, 1}, 123)
	checkSweepPool(t, samples, []float64{0, 0})
}

// TestSweepPoolWidePoints: points of more coordinates than the raw task
// holds take the CBOR task, with the same results.
func TestSweepPoolWidePoints(t *testing.T) {
	const d = maxTaskDims + 1
	mean, cov := make([]float64, d), make([]float64, d*d)
	for i := range d {
		cov[i*d+i] = 1
	}
	checkSweepPool(t, mustSamples(t, 2000, mean, cov, 7), mean)
}

func checkSweepPool(t *testing.T, samples, x []float64) {
	t.Helper()
	shared, err := ShareSamples(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range []Kernel{Hypercube, Gaussian} {
		widths := Linspace(1.0, 1.2, 100)
		want, err := Sweep(samples, x, widths, k)
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 3} {
			got, err := SweepPool(ctx, mustPool(t, workers), shared, x, widths, k)
			if err != nil {
				t.Fatalf("%v workers=%d: SweepPool: %v", k, workers, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%v workers=%d: %d points, want %d", k, workers, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%v workers=%d: point %d = %+v, want %+v (bit-identical)", k, workers, i, got[i], want[i])
				}
			}
		}
	}
}

func TestSweepPoolBadInput(t *testing.T) {
	p := mustPool(t, 1)
	ctx := context.Background()
	if _, err := SweepPool(ctx, p, nil, []float64{0}, []float64{1}, Hypercube); !errors.Is(err, ErrNoSamples) {
		t.Errorf("nil samples: err = %v, want ErrNoSamples", err)
	}
	shared, err := ShareSamples([]float64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if _, err := SweepPool(ctx, p, shared, []float64{0, 0}, []float64{1}, Hypercube); !errors.Is(err, ErrDimension) {
		t.Errorf("3 values as 2-D rows: err = %v, want ErrDimension", err)
	}
	if _, err := SweepPool(ctx, p, shared, []float64{0}, []float64{-1}, Hypercube); !errors.Is(err, ErrWidth) {
		t.Errorf("negative width: err = %v, want ErrWidth", err)
	}
}

func TestSweepNewPool(t *testing.T) {
	samples := mustSamples(t, 2000, []float64{0, 0}, []float64{1, 0, 0, 1}, 7)
	x, widths := []float64{0, 0}, Linspace(0.5, 1.5, 9)
	want, err := Sweep(samples, x, widths, Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	got, err := SweepNewPool(context.Background(), 2, samples, x, widths, Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d points, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("point %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := SweepNewPool(context.Background(), 1, samples, x, []float64{-1}, Hypercube); !errors.Is(err, ErrWidth) {
		t.Errorf("negative width: err = %v, want ErrWidth", err)
	}
}

// TestNormalSamplesShared: the shared draw is the plain one, frozen, and
// SweepNewPoolShared sweeps it as SweepNewPool sweeps the slice.
func TestNormalSamplesShared(t *testing.T) {
	mean, cov := []float64{0, 0}, []float64{1, 0, 0, 1}
	want := mustSamples(t, 5000, mean, cov, 99)
	a, err := NormalSamplesShared(5000, mean, cov, 99)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.Segment().Frozen() {
		t.Error("NormalSamplesShared returned a writable array")
	}
	got := a.Slice()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("value %d = %v, want %v (bit-identical to NormalSamples)", i, got[i], want[i])
		}
	}
	widths := Linspace(1.0, 1.2, 20)
	ctx := context.Background()
	viaSlice, err := SweepNewPool(ctx, 2, want, mean, widths, Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	viaShared, err := SweepNewPoolShared(ctx, 2, a, mean, widths, Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	for i := range viaSlice {
		if viaSlice[i] != viaShared[i] {
			t.Fatalf("point %d: %+v from the shared samples, %+v from the slice", i, viaShared[i], viaSlice[i])
		}
	}
	if _, err := NormalSamplesShared(10, mean, []float64{1, 2, 3}, 1); !errors.Is(err, ErrDimension) {
		t.Errorf("bad covariance: %v, want ErrDimension", err)
	}
}
