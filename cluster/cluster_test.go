package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mproc/mproc/pool"
)

// Functions the tests run on nodes, registered at package init.
var (
	cube = pool.Register("cluster.cube", func(x int) (int, error) { return x * x * x, nil })
	nap  = pool.Register("cluster.nap", func(d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})
	slowCube = pool.Register("cluster.slowcube", func(x int) (int, error) {
		time.Sleep(2 * time.Millisecond)
		return x * x * x, nil
	})
	failOdd = pool.Register("cluster.failodd", func(x int) (int, error) {
		if x%2 == 1 {
			return 0, errors.New("odd " + strconv.Itoa(x))
		}
		return x, nil
	})
	boom = pool.Register("cluster.panic", func(x int) (int, error) {
		var m map[int]int
		m[x]++
		return x, nil
	})
)

// mustServer starts an embedded server for the test.
func mustServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartServer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// mustNode starts this test binary as a node of ns on urls, with workers
// local workers; it is SIGKILLed (if still running) and reaped at cleanup.
func mustNode(tb testing.TB, urls []string, ns string, workers int) *exec.Cmd {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), NodeEnv(urls, ns, workers)...)
	cmd.Env = append(cmd.Env, envName+"=node-"+strconv.Itoa(len(urls))+"-"+ns)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// mustConnect connects a client pool and closes it at cleanup.
func mustConnect(tb testing.TB, cfg *Config) *pool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := Connect(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close() = %v", err)
		}
	})
	return p
}

func ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func cubes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i * i * i
	}
	return out
}

func TestEmbeddedDefault(t *testing.T) {
	p := mustConnect(t, &Config{Nodes: 1, NodeWorkers: 2, Memory: true})
	ctx := context.Background()
	got, err := pool.Map(ctx, p, cube, ints(1000))
	if err != nil {
		t.Fatalf("Map() error %v", err)
	}
	if want := cubes(1000); !slices.Equal(got, want) {
		t.Fatalf("Map() = %v..., want %v...", got[:5], want[:5])
	}
	v, err := pool.Apply(ctx, p, cube, 7)
	if err != nil || v != 343 {
		t.Fatalf("Apply(7) = %v, %v, want 343", v, err)
	}
}
