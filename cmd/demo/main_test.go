package main

import (
	"os"
	"strings"
	"testing"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/pool"
)

func TestMain(m *testing.M) {
	pool.Init()
	if os.Getenv(crashMode) != "" {
		crashGoroutines()
	}
	os.Exit(leakcheck.Run(m))
}

// TestTour runs every section at a small size and checks the outputs that
// the seed's tour shows.
func TestTour(t *testing.T) {
	cfg, err := parseFlags([]string{"-n", "2000", "-widths", "10", "-procs", "2", "-reps", "1", "-plot", ""}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"[1 8 27 64 125 216]",    // section 3: Map(cube, 1..6)
		"p(x) = 0.3",             // section 4: the toy example
		"7 of 8 results",         // section 8: one task crashed its worker only
		"exited with code 2",     // ... a Go fatal error
		"the program died",       // ... which took the goroutine variant down
		"allocation-heavy tasks", // ... and the heap-bound workload, with its winner:
		" win by ",
		"worker insights of the warm pools", // section 6: pool.Stats after the benchmark
		"killed mid-sweep:",                 // section 9: a node and a server killed...
		"the sweep completed on the rest",   // ... and every row equal to serial
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-section", "10"}, {"-n", "0"}, {"-procs", "x"}, {"stray"}} {
		var stderr strings.Builder
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", args)
		}
	}
}
