package mproc_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

func TestMain(m *testing.M) {
	pool.Init() // in a worker this serves tasks and never returns
	os.Exit(leakcheck.Run(m))
}

// The seed's benchmark: density at the origin of n bivariate standard normal
// samples for 100 widths evenly spaced in [1.0, 1.2].
var (
	benchPoint   = []float64{0, 0}
	benchWidths  = kde.Linspace(1.0, 1.2, 100)
	benchSizes   = []benchSize{{"n=1e4", 10_000}, {"n=1e6", 1_000_000}}
	benchWorkers = []int{2, 3, 4, 6}
)

type benchSize struct {
	name string
	n    int
}

// MPROC_BENCH_WORKERS (a comma-separated list, "1,2,4,8,16" on a many-core
// machine) replaces benchWorkers; MPROC_BENCH_N (a sample count, 10000 or
// 1000000) keeps one size.
func init() {
	if v := os.Getenv("MPROC_BENCH_WORKERS"); v != "" {
		benchWorkers = nil
		for f := range strings.SplitSeq(v, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || k < 1 {
				panic(fmt.Sprintf("MPROC_BENCH_WORKERS=%q: want positive integers", v))
			}
			benchWorkers = append(benchWorkers, k)
		}
	}
	if v := os.Getenv("MPROC_BENCH_N"); v != "" {
		benchSizes = slices.DeleteFunc(benchSizes, func(s benchSize) bool { return strconv.Itoa(s.n) != v })
		if len(benchSizes) == 0 {
			panic(fmt.Sprintf("MPROC_BENCH_N=%q: want 10000 or 1000000", v))
		}
	}
}

// BenchmarkKDE times one whole width sweep per op, four ways, and reports
// each way's speedup over the serial sweep measured in the same run:
//
//	mode=serial                  one goroutine, kde.Sweep
//	mode=goroutines/workers=K    K goroutines, kde.SweepGoroutines
//	mode=pool/workers=K          a warm pool of K worker processes, samples shared once (kde.SweepPool)
//	mode=pool-cold/workers=K     as the seed timed it: start the pool, sweep, close (the samples
//	                             were drawn into shared memory beforehand, as the seed's were
//	                             drawn into a NumPy array: kde.NormalSamplesShared)
//
// parent-cpu-ms/op is the CPU time of the benchmark's own process per sweep
// (getrusage): for the pool modes, what coordinating the workers costs.
// Every sweep is checked bit-identical to the serial one.
//
//	go test -run '^$' -bench KDE -count 5 . | tee kde.txt; benchstat kde.txt
func BenchmarkKDE(b *testing.B) {
	ctx := context.Background()
	for _, size := range benchSizes {
		samples, err := kde.NormalSamples(size.n, []float64{0, 0}, []float64{1, 0, 0, 1}, 123)
		if err != nil {
			b.Fatal(err)
		}
		want, err := kde.Sweep(samples, benchPoint, benchWidths, kde.Hypercube)
		if err != nil {
			b.Fatal(err)
		}
		shared, err := kde.ShareSamples(samples)
		if err != nil {
			b.Fatal(err)
		}
		var serialNs float64
		run := func(name string, sweep func() ([]kde.Point, error)) {
			b.Run(name+"/"+size.name, func(b *testing.B) {
				cpu0 := processCPU()
				for b.Loop() {
					got, err := sweep()
					if err != nil {
						b.Fatal(err)
					}
					if !equalPoints(got, want) {
						b.Fatal("sweep differs from the serial sweep")
					}
				}
				// The parent's own CPU (its threads, not the workers'): what a
				// pool costs the caller's process, and takes from the CPUs the
				// workers compute on.
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "parent-cpu-ms/op")
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if name == "mode=serial" {
					serialNs = ns
					b.ReportMetric(float64(size.n*len(benchWidths))/ns*1e9/1e6, "Msamples/s")
				}
				if serialNs > 0 {
					b.ReportMetric(serialNs/ns, "speedup")
				}
			})
		}
		run("mode=serial", func() ([]kde.Point, error) {
			return kde.Sweep(samples, benchPoint, benchWidths, kde.Hypercube)
		})
		for _, k := range benchWorkers {
			run(fmt.Sprintf("mode=goroutines/workers=%d", k), func() ([]kde.Point, error) {
				return kde.SweepGoroutines(samples, benchPoint, benchWidths, kde.Hypercube, k)
			})
		}
		for _, k := range benchWorkers {
			p, err := pool.New(&pool.Config{Workers: k})
			if err != nil {
				b.Fatal(err)
			}
			run(fmt.Sprintf("mode=pool/workers=%d", k), func() ([]kde.Point, error) {
				return kde.SweepPool(ctx, p, shared, benchPoint, benchWidths, kde.Hypercube)
			})
			if err := p.Close(); err != nil {
				b.Fatal(err)
			}
		}
		for _, k := range benchWorkers {
			run(fmt.Sprintf("mode=pool-cold/workers=%d", k), func() ([]kde.Point, error) {
				return kde.SweepNewPoolShared(ctx, k, shared, benchPoint, benchWidths, kde.Hypercube)
			})
		}
		shared.Close()
	}
}

// processCPU returns the user and system CPU time this process has used
// (getrusage(2) RUSAGE_SELF: all its threads, none of its children).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func equalPoints(a, b []kde.Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
