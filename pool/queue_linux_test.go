package pool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mproc/mproc/ipc"
)

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// The seed's first example: rand_string(length, output).
type randArgs struct {
	Length int
	Pos    int
	Output *ipc.Queue[randOut]
}

type randOut struct {
	Pos       int
	S         string
	PPid, Pid int
}

var randStringTask = Register("test.randstring", func(a randArgs) (struct{}, error) {
	fmt.Println("parent process:", os.Getppid())
	fmt.Println("process id:", os.Getpid())
	err := a.Output.Put(context.Background(), randOut{Pos: a.Pos, S: randString(a.Length), PPid: os.Getppid(), Pid: os.Getpid()})
	return struct{}{}, err
})

func TestProcessQueue(t *testing.T) {
	q, err := ipc.NewQueue[randOut](nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Detach() })
	var procs []*Process
	for x := range 4 {
		p, err := Start(randStringTask, randArgs{Length: 5, Pos: x, Output: q})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	pids := map[int]bool{}
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		pids[p.Pid()] = true
	}
	var results []randOut
	for range procs {
		r, err := q.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b randOut) int { return a.Pos - b.Pos })
	for i, r := range results {
		if r.Pos != i || len(r.S) != 5 || strings.Trim(r.S, alphabet) != "" {
			t.Fatalf("result %d = %+v", i, r)
		}
		if r.PPid != os.Getpid() || !pids[r.Pid] {
			t.Fatalf("result %d from pid %d (parent %d), want a child of %d", i, r.Pid, r.PPid, os.Getpid())
		}
	}
	t.Logf("ordered: %v", results)
}
