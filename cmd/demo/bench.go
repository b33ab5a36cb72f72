package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

// benchCase is one configuration of the benchmark: a full width sweep.
type benchCase struct {
	label string // row label, e.g. "goroutines 2"
	bar   string // short label for the chart's axis
	// run is one timed sweep.
	run func() ([]kde.Point, error)
	// pool is a warm row's pool: its workers' busy time is measured
	// around each run, to say where a losing row's time went.
	pool *pool.Pool
	// warm, for a cold row, is the label of the warm row of the same size.
	warm string
}

// benchResult is a case's measured times.
type benchResult struct {
	benchCase
	times []time.Duration
	busy  time.Duration // a warm row's worker busy time, summed over runs and workers
}

// busyTime returns the summed Busy of p's workers.
func busyTime(p *pool.Pool) time.Duration {
	var d time.Duration
	for _, s := range p.Stats() {
		d += s.Busy
	}
	return d
}

func (r benchResult) median() time.Duration {
	t := slices.Clone(r.times)
	slices.Sort(t)
	if len(t)%2 == 1 {
		return t[len(t)/2]
	}
	return (t[len(t)/2-1] + t[len(t)/2]) / 2
}

// sectionBench is the seed's benchmark: n samples, cfg.widths widths evenly
// in [1.0, 1.2], timed serially, with goroutines and with worker processes,
// cfg.reps times each; medians, speedups and a bar chart.
func sectionBench(w io.Writer, cfg *config) error {
	samples, err := kde.NormalSamples(cfg.n, stdMean, stdCov, cfg.seed)
	if err != nil {
		return err
	}
	widths := kde.Linspace(1.0, 1.2, cfg.widths)
	cases := []benchCase{{
		label: "serial", bar: "serial",
		run: func() ([]kde.Point, error) { return kde.Sweep(samples, origin, widths, cfg.kernel) },
	}}
	for _, k := range cfg.procs {
		cases = append(cases, benchCase{
			label: fmt.Sprintf("goroutines %d", k), bar: fmt.Sprintf("%d goroutines", k),
			run: func() ([]kde.Point, error) {
				return kde.SweepGoroutines(samples, origin, widths, cfg.kernel, k)
			},
		})
	}
	poolCases, warmPools, closePools, err := poolBenchCases(cfg, samples, widths)
	if err != nil {
		return err
	}
	defer closePools()
	cases = append(cases, poolCases...)

	want, err := kde.Sweep(samples, origin, widths, cfg.kernel)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "n = %d samples, %d widths in [1.0, 1.2], %s kernel; median of %d runs each\n\n",
		cfg.n, cfg.widths, cfg.kernel, cfg.reps)

	// The bar counts width estimates, for every row when its sweep returns:
	// a per-task hook (pool.Progress) in the timed pool rows only would
	// cost them a callback per task and a wake-up per claim that the other
	// rows do not pay (0.4 ms of a 1.2 ms sweep, measured).
	bar := newProgressBar(cfg.reps*len(cases)*len(widths), "benchmark")
	done := 0
	results := make([]benchResult, len(cases))
	for i, c := range cases {
		results[i].benchCase = c
	}
	// Round-robin over the cases so that a slow spell of the machine does
	// not land on one configuration only. Between two runs of a row the
	// other rows run, so each timed run of a serial, goroutine or warm
	// pool row follows an untimed one of the same row: warm means caches
	// hot and workers awake, as in a program's loop. Cold rows are timed
	// from scratch, as the seed timed them.
	for range cfg.reps {
		for i := range results {
			if results[i].warm == "" {
				if _, err := results[i].run(); err != nil {
					return fmt.Errorf("%s: %w", results[i].label, err)
				}
			}
			var busy0 time.Duration
			if p := results[i].pool; p != nil {
				busy0 = busyTime(p)
			}
			start := time.Now()
			got, err := results[i].run()
			elapsed := time.Since(start)
			if p := results[i].pool; p != nil {
				results[i].busy += busyTime(p) - busy0
			}
			if err != nil {
				return fmt.Errorf("%s: %w", results[i].label, err)
			}
			if !samePoints(got, want) {
				return fmt.Errorf("%s: results differ from the serial sweep", results[i].label)
			}
			results[i].times = append(results[i].times, elapsed)
			done += len(widths)
			_ = bar.Set(done)
		}
	}
	_ = bar.Finish()

	serial := results[0].median()
	fmt.Fprintf(w, "%-32s %12s %12s %9s\n", "configuration", "median", "min", "speedup")
	for _, r := range results {
		fmt.Fprintf(w, "%-32s %12s %12s %8.2fx\n", r.label, fmtDur(r.median()), fmtDur(slices.Min(r.times)),
			float64(serial)/float64(r.median()))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "all %d configurations gave bit-identical (h, p) pairs.\n", len(results))
	fmt.Fprintf(w, "GOMAXPROCS = %d: more goroutines or processes than that cannot run at once.\n", runtime.GOMAXPROCS(0))
	for _, line := range whyLosing(results) {
		fmt.Fprintln(w, line)
	}
	printInsights(w, warmPools)
	if cfg.plot != "" {
		if err := writePlot(cfg.plot, results, cfg.n); err != nil {
			return err
		}
		fmt.Fprintln(w, "bar chart written to", cfg.plot)
	}
	return nil
}

// whyLosing says, for each process row slower than serial, where its time
// went, from what was measured: a warm row's wall time against its
// workers' busy time (the rest is handing work over and waking), a cold
// row's time against its warm row's (the rest is starting and stopping
// the workers).
func whyLosing(results []benchResult) []string {
	serial := results[0].median()
	medians := make(map[string]time.Duration)
	for _, r := range results {
		medians[r.label] = r.median()
	}
	var out []string
	for _, r := range results[1:] {
		m := r.median()
		if m <= serial {
			continue
		}
		switch {
		case r.pool != nil:
			workers := time.Duration(len(r.pool.Stats()))
			runs := time.Duration(len(r.times))
			var wall time.Duration
			for _, t := range r.times {
				wall += t
			}
			each := r.busy / runs / workers
			out = append(out, fmt.Sprintf("%s loses: each worker computed %s of a sweep's %s (means of the runs); the other %s is handing work over and waking.",
				r.label, fmtDur(each), fmtDur(wall/runs), fmtDur(max(wall/runs-each, 0))))
		case r.warm != "":
			out = append(out, fmt.Sprintf("%s loses: %s of its %s is starting and stopping the workers (its warm row takes %s).",
				r.label, fmtDur(max(m-medians[r.warm], 0)), fmtDur(m), fmtDur(medians[r.warm])))
		default:
			out = append(out, fmt.Sprintf("%s loses: the whole serial sweep takes only %s.", r.label, fmtDur(serial)))
		}
	}
	return out
}

// poolBenchCases returns the worker-process rows of the benchmark, for each
// k in cfg.procs:
//   - "pool k warm": the pool is started before timing, so a run is only
//     the sweep;
//   - "pool k cold": the seed's way, the pool's life inside the timed run:
//     start the workers, sweep, close the pool.
//
// Both read the samples from one frozen shm.Array, shared before timing as
// the seed's samples were drawn into a NumPy array before its timing.
//
// It also returns the warm rows' pools and a function that releases what
// they hold.
func poolBenchCases(cfg *config, samples, widths []float64) ([]benchCase, []*pool.Pool, func(), error) {
	ctx := context.Background()
	shared, err := kde.ShareSamples(samples)
	if err != nil {
		return nil, nil, nil, err
	}
	var pools []*pool.Pool
	release := func() {
		for _, p := range pools {
			p.Close()
		}
		shared.Close()
	}
	var cases []benchCase
	for _, k := range cfg.procs {
		p, err := pool.New(&pool.Config{Workers: k})
		if err != nil {
			release()
			return nil, nil, nil, err
		}
		pools = append(pools, p)
		cases = append(cases, benchCase{
			pool:  p,
			label: fmt.Sprintf("pool %d processes, warm", k), bar: fmt.Sprintf("%d procs warm", k),
			run: func() ([]kde.Point, error) {
				return kde.SweepPool(ctx, p, shared, origin, widths, cfg.kernel)
			},
		})
	}
	for _, k := range cfg.procs {
		cases = append(cases, benchCase{
			warm:  fmt.Sprintf("pool %d processes, warm", k),
			label: fmt.Sprintf("pool %d processes, cold (seed)", k), bar: fmt.Sprintf("%d procs cold", k),
			run: func() ([]kde.Point, error) {
				return kde.SweepNewPoolShared(ctx, k, shared, origin, widths, cfg.kernel)
			},
		})
	}
	return cases, pools, release, nil
}

// printInsights is a compact table of the warm pools' worker insights
// (pool.Stats): where each worker's time went and its slowest message.
func printInsights(w io.Writer, pools []*pool.Pool) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "worker insights of the warm pools (pool.Stats):\n")
	fmt.Fprintf(w, "%-6s %6s %9s %7s %11s %11s %8s  %s\n", "procs", "worker", "start-up", "tasks", "working", "waiting", "restarts", "slowest message")
	for _, p := range pools {
		stats := p.Stats()
		for _, s := range stats {
			slow := "-"
			if len(s.Slowest) > 0 {
				t := s.Slowest[0]
				slow = fmt.Sprintf("%s (tasks %d..%d)", fmtDur(t.Took), t.Index, t.Index+t.Tasks-1)
			}
			fmt.Fprintf(w, "%-6d %6d %9s %7d %11s %11s %8d  %s\n", len(stats), s.Worker, fmtDur(s.StartUp), s.Tasks,
				fmtDur(s.Busy), fmtDur(s.Idle), s.Restarts, slow)
		}
	}
}

func samePoints(a, b []kde.Point) bool {
	return slices.EqualFunc(a, b, func(x, y kde.Point) bool {
		return math.Float64bits(x.H) == math.Float64bits(y.H) && math.Float64bits(x.P) == math.Float64bits(y.P)
	})
}

// newProgressBar draws on stderr when it is a terminal, and nowhere
// otherwise (so redirected output stays clean).
func newProgressBar(total int, desc string) *progressbar.ProgressBar {
	var out io.Writer = io.Discard
	if term.IsTerminal(int(os.Stderr.Fd())) {
		out = os.Stderr
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
		// Drawn at most every 100 ms: the pool rows update it from the
		// collector, once per task, inside the timed sweep.
		progressbar.OptionThrottle(100*time.Millisecond),
	)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
