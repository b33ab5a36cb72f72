package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mproc/mproc/ipc"
	"github.com/mproc/mproc/shm"
)

// Two rings laid out back to back in one piece of memory, as a worker's
// segment holds a task ring and a result ring. Here both ends live in one
// process; across processes the other side calls AttachRing on its mapping.
func ExampleRing() {
	n := ipc.RingSize(nil)
	// Normally mem is (part of) a shm.Segment's payload, shared by both
	// processes; any 64-byte aligned []byte works.
	seg, err := shm.New("example", 2*n)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer seg.Close()
	mem := seg.Bytes()
	tasks, err := ipc.NewRing(mem[:n], nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	worker, _ := ipc.AttachRing(mem[:n]) // the consumer's view
	ctx := context.Background()

	tasks.Put(ctx, []byte("hello"))
	tasks.Put(ctx, []byte("world"))
	tasks.Close()

	var buf []byte
	for {
		buf, err = worker.Get(ctx, buf)
		if err != nil {
			fmt.Println("drained, then closed:", errors.Is(err, os.ErrClosed))
			break
		}
		fmt.Printf("%s\n", buf)
	}
	// Output:
	// hello
	// world
	// drained, then closed: true
}

// A typed queue in its own shared memory segment. Any number of processes
// may put (each gets its own lane); one consumes.
func ExampleQueue() {
	type point struct{ X, Y float64 }
	q, err := ipc.NewQueue[point](nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Detach()
	ctx := context.Background()
	q.Put(ctx, point{1, 2})
	q.Put(ctx, point{3, 4})
	fmt.Println(q.Len(), "waiting") // a snapshot, for monitoring
	for range 2 {
		p, _ := q.Get(ctx)
		fmt.Println(p)
	}
	_, err = q.TryGet()
	fmt.Println(err)
	// Output:
	// 2 waiting
	// {1 2}
	// {3 4}
	// ipc: ring empty
}
