// Command demo is mproc's tour: the examples of Sebastian Raschka's
// "Parallel processing via the multiprocessing module", done with Go
// processes over shared memory, and its Parzen-window benchmark measured
// live on this machine.
//
//	go run ./cmd/demo                 # the whole tour
//	go run ./cmd/demo -section 6 -n 1000000
//	go run ./cmd/demo -h              # all flags
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

// config is the parsed command line.
type config struct {
	sections []int // 1..9, in the tour's order
	n        int
	widths   int
	procs    []int
	reps     int
	plot     string
	kernel   kde.Kernel
	seed     uint64
}

func main() {
	// Go's `if __name__ == "__main__":`. In a worker process (this binary
	// re-executed by pool.New or pool.Start) Init serves tasks and never
	// returns.
	pool.Init()
	if os.Getenv(crashMode) != "" {
		crashGoroutines() // section 8's child: crashes, never returns
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "run 'demo -h' for the flags")
		os.Exit(2)
	}
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

var sectionTitles = [...]string{
	1: "Process + Queue: four processes make random strings",
	2: "Ordered results: positions, then sorted",
	3: "Pool: Map and ApplyAsync of cube",
	4: "The Parzen-window toy example",
	5: "Window sweep on 2-D normal samples",
	6: "Benchmark: serial vs. goroutines vs. processes",
	7: "System information",
	8: "Where processes beat goroutines, measured",
	9: "Cluster: the sweep through NATS JetStream, a node and a server killed",
}

func run(cfg *config, w io.Writer) error {
	for _, s := range cfg.sections {
		fmt.Fprintf(w, "\n== %d. %s ==\n\n", s, sectionTitles[s])
		var err error
		switch s {
		case 1:
			err = sectionProcessQueue(w, cfg)
		case 2:
			err = sectionOrdered(w, cfg)
		case 3:
			err = sectionPool(w, cfg)
		case 4:
			err = sectionToy(w, cfg)
		case 5:
			err = sectionSweep(w, cfg)
		case 6:
			err = sectionBench(w, cfg)
		case 7:
			err = sectionSysinfo(w, cfg)
		case 8:
			err = sectionBeat(w, cfg)
		case 9:
			err = sectionCluster(w, cfg)
		}
		if err != nil {
			return fmt.Errorf("section %d: %w", s, err)
		}
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: demo [flags]

Runs mproc's tour of the seed's multiprocessing examples, sections:
  1 Process + Queue   2 ordered results   3 Pool (cube)   4 Parzen toy example
  5 window sweep      6 benchmark         7 system information
  8 where processes beat goroutines (a crashing task, a GC-heavy workload)
  9 cluster (3 NATS servers and 3 nodes on this machine)

flags:
`)
		fs.PrintDefaults()
	}
	section := fs.String("section", "all", "sections to run: `all` or a comma-separated list of 1-9")
	n := fs.Int("n", 10000, "number of 2-D normal samples for sections 5 and 6 (try 1000000 to see the speedup grow)")
	widths := fs.Int("widths", 100, "number of window widths in [1.0, 1.2] timed by the benchmark (section 6)")
	procs := fs.String("procs", "2,3,4,6", "comma-separated worker counts timed by the benchmark")
	reps := fs.Int("reps", 5, "repetitions per benchmark row; the median is shown")
	plot := fs.String("plot", "kde-benchmark.png", "PNG file for the benchmark's bar chart; empty for none")
	kernel := fs.String("kernel", "hypercube", "Parzen kernel: hypercube or gaussian")
	seed := fs.Uint64("seed", 123, "seed of the normal samples")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every option is a flag", fs.Arg(0))
	}
	cfg := &config{n: *n, widths: *widths, reps: *reps, plot: *plot, seed: *seed}
	var err error
	if cfg.sections, err = parseSections(*section); err != nil {
		return nil, err
	}
	if cfg.procs, err = parseInts(*procs); err != nil {
		return nil, fmt.Errorf("-procs %q: %w", *procs, err)
	}
	if cfg.kernel, err = kde.ParseKernel(*kernel); err != nil {
		return nil, fmt.Errorf("-kernel: %w", err)
	}
	switch {
	case cfg.n < 1:
		return nil, fmt.Errorf("-n %d: need at least one sample", cfg.n)
	case cfg.widths < 1:
		return nil, fmt.Errorf("-widths %d: need at least one width", cfg.widths)
	case cfg.reps < 1:
		return nil, fmt.Errorf("-reps %d: need at least one repetition", cfg.reps)
	}
	return cfg, nil
}

func parseSections(s string) ([]int, error) {
	if s == "all" {
		return []int{1, 2, 3, 4, 5, 6, 7, 8, 9}, nil
	}
	secs, err := parseInts(s)
	if err != nil {
		return nil, fmt.Errorf("-section %q: %w", s, err)
	}
	for _, v := range secs {
		if v > 9 {
			return nil, fmt.Errorf("-section %q: no section %d (1-9)", s, v)
		}
	}
	slices.Sort(secs)
	return slices.Compact(secs), nil
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}
