// Package kde estimates probability densities with the Parzen-window method:
// the benchmark workload of mproc's tour, in pure Go (no unsafe, no
// syscalls), so the same code runs serially, in goroutines and in worker
// processes.
//
// Samples are one flat row-major []float64 of n rows of d coordinates; the
// dimension is that of the point x. That is exactly what an
// shm.Array[float64]'s Slice() returns, so workers read shared samples in
// place:
//
//	mean, cov := []float64{0, 0}, []float64{1, 0, 0, 1}
//	samples, _ := kde.NormalSamples(10000, mean, cov, 123)
//	p, _ := kde.Estimate(samples, []float64{0, 0}, 1.1, kde.Hypercube)
//	sweep, _ := kde.SweepGoroutines(samples, []float64{0, 0}, kde.Linspace(1.0, 1.2, 100), kde.Hypercube, 2)
//
// Estimate is the unit of work: a pure function of its arguments that a
// registered pool function can call for one width, and Sweep runs it over a
// range of widths. A sweep split into consecutive ranges of ascending widths
// and concatenated equals the whole sweep bit for bit, so serial,
// goroutine and process sweeps agree exactly.
//
// The hypercube kernel decides each sample exactly as the seed's
// |x_j - s_j| / h <= 1/2 does, but compares |x_j - s_j| with a bound
// computed once per width instead of dividing (about 3 ns per 2-D sample on
// the development machine: go test -run '^$' -bench Estimate ./kde); d = 1
// and d = 2 have their own loops, tested equal to the general one.
//
// # Caveats
//
// The seed's table of p(x) against h climbs from 0.016 to 0.1685: its
// point_x has shape (2, 1), so it divided by h^point_x.shape[1] = h, not
// h^2. This package divides by h^d as the method defines; multiply by
// h^(d-1) to reproduce the seed's figures.
//
// The samples must not change during an estimate; shared read-only (frozen)
// arrays guarantee that across processes.
//
// h^d is math.Pow(h, d), which for d = 2 equals h*h but for larger d may
// differ from numpy's h**d in the last bit.
//
// NormalSamples is reproducible for a given seed with the gonum version in
// go.mod; another gonum version may draw different samples.
package kde
