package cluster

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mproc/mproc/pool"
)

var tiny = pool.Register("cluster.tiny", func(x int32) (int32, error) { return x + 1, nil })

// mustNodes starts k nodes of workers workers each on a fresh embedded
// server and connects a client of slots virtual workers to them.
func mustNodes(b *testing.B, ns string, k, workers, slots int) *pool.Pool {
	s := mustServer(b)
	urls := []string{s.URL()}
	for range k {
		mustNode(b, urls, ns, workers)
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

var _ = strconv.Itoa
