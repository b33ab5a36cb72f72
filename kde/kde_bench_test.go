package kde

import (
	"fmt"
	"testing"
)

// BenchmarkEstimate reports the cost of one sample evaluation (ns/sample)
// for the seed's benchmark size, n = 10000 2-D samples:
//
//	go test -run '^$' -bench Estimate -count 5 ./kde
//
// path=general times the any-d loop on the same data, the baseline for the
// d = 2 specialisation.
func BenchmarkEstimate(b *testing.B) {
	const n = 10000
	samples := mustSamples(b, n, mean2, ident2, 123)
	bench := func(name string, f func() float64) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var sink float64
			for b.Loop() {
				sink += f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/sample")
			_ = sink
		})
	}
	lim := cubeLimit(1.1)
	bench("kernel=hypercube/d=2/n=1e4", func() float64 { return mustEstimate(samples, origin2, 1.1, Hypercube) })
	bench("kernel=hypercube/d=2/path=general/n=1e4", func() float64 { return float64(countCubeN(samples, origin2, lim)) })
	bench("kernel=gaussian/d=2/n=1e4", func() float64 { return mustEstimate(samples, origin2, 1.1, Gaussian) })

	// At n = 1e6 the branch predictor cannot learn which samples fall
	// inside, which is what the branch-free d = 2 loop is for.
	big := mustSamples(b, 1_000_000, mean2, ident2, 123)
	b.Run("kernel=hypercube/d=2/n=1e6", func(b *testing.B) {
		var sink float64
		for b.Loop() {
			sink += mustEstimate(big, origin2, 1.1, Hypercube)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/sample")
		_ = sink
	})
}

// BenchmarkSweep times the seed's benchmark, 100 widths in [1.0, 1.2] over
// n = 10000 samples, serial and with goroutines.
func BenchmarkSweep(b *testing.B) {
	samples := mustSamples(b, 10000, mean2, ident2, 123)
	widths := Linspace(1.0, 1.2, 100)
	b.Run("mode=serial/n=1e4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Sweep(samples, origin2, widths, Hypercube); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, w := range []int{2, 4} {
		b.Run(fmt.Sprintf("mode=goroutines/workers=%d/n=1e4", w), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SweepGoroutines(samples, origin2, widths, Hypercube, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
