package cluster_test

import (
	"context"
	"fmt"

	"github.com/mproc/mproc/cluster"
	"github.com/mproc/mproc/pool"
)

// square is registered at package initialisation, so that a node (this
// binary re-executed) has it too.
var square = pool.Register("example.square", func(x int) (int, error) { return x * x, nil })

// With no URLs, Connect starts an embedded NATS server and a node on this
// machine; Close stops and removes both.
func ExampleConnect() {
	ctx := context.Background()
	p, err := cluster.Connect(ctx, &cluster.Config{NodeWorkers: 2, Memory: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	out, err := pool.Map(ctx, p, square, []int{1, 2, 3, 4})
	fmt.Println(out, err)
	// Output: [1 4 9 16] <nil>
}
