package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mproc/mproc/kde"
)

// sectionProcessQueue is the seed's first example: four processes put random
// 5-character strings into one cross-process queue, each printing its
// parent's pid and its own; results arrive in finishing order.
//
// TODO(lead): needs package pool (Process) and ipc.Queue[string].
func sectionProcessQueue(w io.Writer, cfg *config) error { return nil }

// sectionOrdered is the seed's second example: the same with positions,
// then sorted.
//
// TODO(lead): needs package pool.
func sectionOrdered(w io.Writer, cfg *config) error { return nil }

// sectionPool is the seed's Pool example: Map(cube, 1..6) =
// [1 8 27 64 125 216], then the ApplyAsync variant.
//
// TODO(lead): needs package pool.
func sectionPool(w io.Writer, cfg *config) error { return nil }

// sectionToy is the seed's toy example: ten 3-D points, three inside the
// unit cube at the origin.
func sectionToy(w io.Writer, cfg *config) error {
	p, err := kde.Estimate(kde.Toy(), []float64{0, 0, 0}, 1, kde.Hypercube)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "10 points in 3-D, 3 inside the unit cube centred on x = (0, 0, 0), h = 1:")
	fmt.Fprintln(w, "p(x) =", p)
	return nil
}

var (
	origin  = []float64{0, 0}
	stdMean = []float64{0, 0}
	stdCov  = []float64{1, 0, 0, 1}
)

// sectionSweep is the seed's sweep: h = 0.1 .. 1.2 over n standard normal
// samples, printed as the seed printed it, next to the true density.
func sectionSweep(w io.Writer, cfg *config) error {
	samples, err := kde.NormalSamples(cfg.n, stdMean, stdCov, cfg.seed)
	if err != nil {
		return err
	}
	truth, err := kde.NormalDensity(origin, stdMean, stdCov)
	if err != nil {
		return err
	}
	points, err := kde.Sweep(samples, origin, kde.Arange(0.1, 1.3, 0.1), cfg.kernel)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "n = %d samples of the 2-D standard normal (seed %d), %s kernel, x = (0, 0)\n", cfg.n, cfg.seed, cfg.kernel)
	fmt.Fprintln(w, "actual probability density:", pyFloat(truth))
	fmt.Fprintln(w)
	for _, pt := range points {
		line := fmt.Sprintf("h = %s, p(x) = %s", pyFloat(pt.H), pyFloat(pt.P))
		fmt.Fprintf(w, "%-40s seed's p·h = %-16s true %.6f\n", line, pyFloat(pt.P*pt.H), truth)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "p(x) = k/n/h^2. The seed divided by h only (its point_x had shape (2, 1)), so its")
	fmt.Fprintln(w, "table climbs from 0.016 to 0.1685; the column p·h reproduces that shape.")
	return nil
}

// pyFloat formats v as the seed's Python printed numpy floats: 12
// significant digits, and a ".0" on whole numbers.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'g', 12, 64)
	if !strings.ContainsAny(s, ".eIN") {
		s += ".0"
	}
	return s
}
