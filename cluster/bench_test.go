package cluster

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

var tiny = pool.Register("cluster.tiny", func(x int32) (int32, error) { return x + 1, nil })

// mustNodes starts k nodes of workers workers each on a fresh embedded
// server and connects a client of slots virtual workers to them.
func mustNodes(b *testing.B, ns string, k, workers, slots int) *pool.Pool {
	s := mustServer(b)
	urls := []string{s.URL()}
	for i := range k {
		// Node i's workers pinned to CPUs of their own, as a local pool's.
		var cpus []string
		for w := range workers {
			cpus = append(cpus, strconv.Itoa((i*workers+w)%runtime.NumCPU()))
		}
		mustNode(b, urls, ns, workers, envCPUs+"="+strings.Join(cpus, ","))
	}
	return mustConnect(b, &Config{URLs: urls, Namespace: ns, Workers: slots, Memory: true})
}

// BenchmarkMapTiny maps 100,000 tiny tasks through 2 nodes on loopback
// and reports the amortised cost per item, beside a local pool of 2.
//
//	go test -run '^$' -bench MapTiny -benchtime 5x ./cluster
func BenchmarkMapTiny(b *testing.B) {
	args := make([]int32, 100_000)
	for i := range args {
		args[i] = int32(i)
	}
	ctx := context.Background()
	run := func(b *testing.B, p *pool.Pool) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := pool.Map(ctx, p, tiny, args)
			if err != nil || len(out) != len(args) || out[len(out)-1] != int32(len(args)) {
				b.Fatalf("Map() = %d results, %v", len(out), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(args)), "µs/item")
	}
	b.Run("mode=cluster/nodes=2", func(b *testing.B) {
		run(b, mustNodes(b, "tiny", 2, 1, 4))
	})
	b.Run("mode=local/workers=2", func(b *testing.B) {
		p, err := pool.New(&pool.Config{Workers: 2, NoPin: true})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		run(b, p)
	})
}

// BenchmarkApply reports the round trip of one Apply through the broker
// (p50 and p99 of the run), beside a local pool's.
//
//	go test -run '^$' -bench Apply -benchtime 2000x ./cluster
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, p *pool.Pool) {
		var lat []time.Duration
		for b.Loop() {
			t := time.Now()
			if v, err := pool.Apply(ctx, p, tiny, 1); err != nil || v != 2 {
				b.Fatalf("Apply() = %v, %v", v, err)
			}
			lat = append(lat, time.Since(t))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("mode=cluster/nodes=1", func(b *testing.B) {
		run(b, mustNodes(b, "apply", 1, 1, 2))
	})
	b.Run("mode=local/workers=1", func(b *testing.B) {
		p, err := pool.New(&pool.Config{Workers: 1, NoPin: true})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		run(b, p)
	})
}

// BenchmarkKDESweep runs the seed's sweep (100 widths, n = 1e6 samples)
// through 2 nodes of 1 worker each and through a local pool of 2, the two
// taking turns sweep by sweep so that both see the same machine (this
// guest's speed drifts from minute to minute), the samples shared once
// (through the object store for the nodes: the warm-up sweep ships them).
// It reports each one's median sweep and the cluster's speed relative to
// the local pool's (the ratio of the medians). Every sweep is checked
// bit-identical to the serial one.
//
//	go test -run '^$' -bench KDESweep -benchtime 20x ./cluster
func BenchmarkKDESweep(b *testing.B) {
	ctx := context.Background()
	x := []float64{0, 0}
	widths := kde.Linspace(1.0, 1.2, 100)
	const n = 1_000_000
	samples, err := kde.NormalSamples(n, x, []float64{1, 0, 0, 1}, 123)
	if err != nil {
		b.Fatal(err)
	}
	want, err := kde.Sweep(samples, x, widths, kde.Hypercube)
	if err != nil {
		b.Fatal(err)
	}
	shared, err := kde.ShareSamples(samples)
	if err != nil {
		b.Fatal(err)
	}
	defer shared.Close()
	local, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	remote := mustNodes(b, "kde", 2, 1, 2)
	sweep := func(p *pool.Pool) time.Duration {
		t := time.Now()
		got, err := kde.SweepPool(ctx, p, shared, x, widths, kde.Hypercube)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		if !slices.Equal(got, want) {
			b.Fatal("sweep differs from the serial sweep")
		}
		return d
	}
	b.Run("mode=cluster/nodes=2x1/n=1e6", func(b *testing.B) {
		sweep(local)  // warm: workers started, samples mapped
		sweep(remote) // and shipped to the nodes
		var lt, ct []time.Duration
		for b.Loop() {
			lt = append(lt, sweep(local))
			ct = append(ct, sweep(remote))
		}
		lm, cm := median(lt), median(ct)
		b.ReportMetric(float64(cm.Microseconds())/1e3, "ms/sweep")
		b.ReportMetric(float64(lm.Microseconds())/1e3, "local-ms/sweep")
		b.ReportMetric(float64(lm)/float64(cm), "x-local")
	})
}

func median(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}
