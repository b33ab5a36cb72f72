package ipc

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// TestQueueTwoViewsOneProcess: two views of one queue in one process (the
// creator's and an UnmarshalBinary of it) share this process's lane, so
// their Puts must be serialised with each other, not only within each view.
// Every item arrives exactly once and in order per producer goroutine, and
// detaching one view leaves the lane to the other.
func TestQueueTwoViewsOneProcess(t *testing.T) {
	const perView = 200000
	q, _ := mustQueue(t, &QueueConfig{Producers: 2, Ring: &RingConfig{Capacity: 1024}})
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q2 Queue[item]
	if err := q2.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for id, v := range []*Queue[item]{q, &q2} {
		wg.Go(func() {
			for i := range int64(perView) {
				if err := v.Put(ctx, item{int32(id), i}); err != nil {
					t.Errorf("view %d: Put(%d) = %v", id, i, err)
					return
				}
			}
		})
	}
	next := make(map[int32]int64)
	for next[0]+next[1] < 2*perView {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatalf("Get() = %v with %v delivered", err, next)
		}
		checkOrder(t, next, it)
	}
	wg.Wait()
	if err := q2.Detach(); err != nil {
		t.Fatalf("Detach() = %v", err)
	}
	if err := q2.Detach(); err != nil {
		t.Fatalf("second Detach() = %v", err)
	}
	lanes := q.st.q
	if lanes.mine < 0 || lanes.owners[lanes.mine].owner.Load() != uint32(os.Getpid()) {
		t.Fatalf("after one view detached, the other lost the process's lane (mine = %d)", lanes.mine)
	}
	if err := q.Put(ctx, item{0, perView}); err != nil {
		t.Fatalf("Put() after the other view detached = %v", err)
	}
	if it, err := q.Get(ctx); err != nil || it != (item{0, perView}) {
		t.Fatalf("Get() = %v, %v; want %v", it, err, item{0, perView})
	}
}
