package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
	"github.com/mproc/mproc/shm"
)

var sumArray = pool.Register("cluster.sumarray", func(a *shm.Array[float64]) (float64, error) {
	s := 0.0
	for _, v := range a.Slice() {
		s += v
	}
	return s, nil
})

func TestSharedArray(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "shared", 1)
	mustNode(t, urls, "shared", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "shared", Workers: 4, Memory: true})
	ctx := context.Background()

	samples, err := kde.NormalSamples(20_000, []float64{0, 0}, []float64{1, 0, 0, 1}, 123)
	if err != nil {
		t.Fatal(err)
	}
	widths := kde.Linspace(1.0, 1.2, 100)
	want, err := kde.Sweep(samples, []float64{0, 0}, widths, kde.Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := kde.ShareSamples(samples)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := kde.SweepPool(ctx, p, shared, []float64{0, 0}, widths, kde.Hypercube)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("SweepPool()[%d] = %v, want the serial %v bit for bit", i, got[i], want[i])
			}
		}
	}

	// Closing the array removes its object from the store.
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	obj, err := js.ObjectStore(ctx, namesFor("shared").bucket())
	if err != nil {
		t.Fatal(err)
	}
	name := segName(shared.Segment().ID())
	if _, err := obj.GetInfo(ctx, name); err != nil {
		t.Fatalf("object of the shared samples: %v", err)
	}
	shared.Close()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, err := obj.GetInfo(ctx, name); errors.Is(err, jetstream.ErrObjectNotFound) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the closed array's object is still in the store after 5 s")
		}
	}

	// A writable array cannot be shipped.
	a, err := shm.NewArray[float64](10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := pool.Apply(ctx, p, sumArray, a); err == nil {
		t.Fatal("Apply(a writable array) = nil error, want one saying to Freeze it")
	} else {
		t.Logf("Apply(writable array): %v", err)
	}
}
