package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// local workers (unpinned: several nodes share this machine); it is
// drained, or SIGKILLed after 10 s, and reaped at cleanup.
func mustNode(tb testing.TB, urls []string, ns string, workers int, env ...string) *testNode {
	tb.Helper()
	cmd, err := NodeCommand(urls, ns, workers)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Env = append(cmd.Env, envName+"=node-"+strconv.Itoa(len(urls))+"-"+ns, envCPUs+"=none")
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // sets ProcessState
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &testNode{Cmd: cmd, done: done}
}

// testNode is a node process started by mustNode.
type testNode struct {
	*exec.Cmd
	done chan struct{} // closed once it is reaped
}

// exited waits for the node's end and returns its state.
func (n *testNode) exited() *os.ProcessState {
	<-n.done
	return n.ProcessState
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
	stores := func() []string {
		m, _ := filepath.Glob(filepath.Join(os.TempDir(), "mproc-nats-*"))
		return m
	}
	before := stores()
	ctx := context.Background()
	p, err := Connect(ctx, &Config{Nodes: 1, NodeWorkers: 2, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if after := stores(); len(after) > len(before) {
			t.Errorf("the embedded server's store is left behind: %v (before: %v)", after, before)
		}
	}()
	if len(stores()) <= len(before) {
		t.Errorf("no embedded server store in %s while the pool runs: the check above could not fail", os.TempDir())
	}
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

// where reports the node a task ran on: its worker's parent.
var where = pool.Register("cluster.where", func(d time.Duration) (int, error) {
	time.Sleep(d)
	return os.Getppid(), nil
})

func TestSameAsLocal(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "same", 1)
	mustNode(t, urls, "same", 1)
	remote := mustConnect(t, &Config{URLs: urls, Namespace: "same", Workers: 4, Memory: true})
	local, err := pool.New(&pool.Config{Workers: 2, NoPin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	ctx := context.Background()
	for _, n := range []int{1, 10, 5000} {
		t.Run("Map n="+strconv.Itoa(n), func(t *testing.T) {
			want, err := pool.Map(ctx, local, cube, ints(n))
			if err != nil {
				t.Fatal(err)
			}
			got, err := pool.Map(ctx, remote, cube, ints(n))
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("Map() = %v (%d results), %v; want the local pool's %d results", head(got), len(got), err, len(want))
			}
		})
	}
	t.Run("Apply", func(t *testing.T) {
		for _, x := range []int{0, -3, 1 << 20} {
			got, err := pool.Apply(ctx, remote, cube, x)
			want, _ := pool.Apply(ctx, local, cube, x)
			if err != nil || got != want {
				t.Fatalf("Apply(%d) = %v, %v, want %v", x, got, err, want)
			}
		}
	})
	t.Run("ApplyAsync and MapAsync", func(t *testing.T) {
		rs := make([]*pool.Result[int], 50)
		for i := range rs {
			rs[i] = pool.ApplyAsync(ctx, remote, cube, i)
		}
		m := pool.MapAsync(ctx, remote, cube, ints(300))
		for i, r := range rs {
			if v, err := r.Get(ctx); err != nil || v != i*i*i {
				t.Fatalf("ApplyAsync(%d).Get() = %v, %v", i, v, err)
			}
		}
		if v, err := m.Get(ctx); err != nil || !slices.Equal(v, cubes(300)) {
			t.Fatalf("MapAsync().Get() = %v, %v", head(v), err)
		}
	})
	t.Run("Imap and ImapUnordered", func(t *testing.T) {
		var got []int
		for v, err := range pool.Imap(ctx, remote, cube, slices.Values(ints(2000))) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, cubes(2000)) {
			t.Fatalf("Imap() = %v..., want the cubes in order", head(got))
		}
		got = got[:0]
		for v, err := range pool.ImapUnordered(ctx, remote, cube, slices.Values(ints(2000))) {
			if err != nil {
				t.Fatal(err)
			}
			if v.Value != v.Index*v.Index*v.Index {
				t.Fatalf("ImapUnordered() yielded %d for index %d", v.Value, v.Index)
			}
			got = append(got, v.Value)
		}
		slices.Sort(got)
		if !slices.Equal(got, cubes(2000)) {
			t.Fatalf("ImapUnordered() sorted = %v..., want the cubes", head(got))
		}
	})
	t.Run("errors name the node", func(t *testing.T) {
		_, err := pool.Map(ctx, remote, failOdd, ints(10))
		var te *pool.TaskError
		if !errors.As(err, &te) || te.Index%2 != 1 || te.Node == "" || te.Pid == 0 {
			t.Fatalf("Map(failOdd) = %v, want a *TaskError of an odd item naming the node and pid", err)
		}
		if want := "odd " + strconv.Itoa(te.Index); te.Err.Error() != want {
			t.Fatalf("TaskError.Err = %q, want %q", te.Err, want)
		}
		_, err = pool.Apply(ctx, remote, boom, 1)
		if !errors.As(err, &te) || !errors.Is(err, pool.ErrPanic) || te.Stack == "" || te.Node == "" {
			t.Fatalf("Apply(panic) = %v, want a *TaskError wrapping ErrPanic with the node's stack", err)
		}
		var got []error
		for _, err := range pool.Imap(ctx, remote, failOdd, slices.Values(ints(6))) {
			got = append(got, err)
		}
		if len(got) != 6 || got[0] != nil || got[1] == nil || got[2] != nil {
			t.Fatalf("Imap(failOdd) errors = %v, want every odd item failed alone", got)
		}
	})
	t.Run("big arguments are cut by bytes", func(t *testing.T) {
		// 40 arguments of 100 KiB: one chunk of 4 MB travels as several
		// messages under the 1 MiB limit.
		args := make([][]byte, 40)
		for i := range args {
			args[i] = make([]byte, 100<<10)
			args[i][0] = byte(i)
		}
		got, err := pool.Map(ctx, remote, firstByte, args)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("Map(firstByte)[%d] = %d", i, v)
			}
		}
		_, err = pool.Apply(ctx, remote, firstByte, make([]byte, 2<<20))
		if !errors.Is(err, pool.ErrTooLarge) {
			t.Fatalf("Apply(2 MiB argument) = %v, want ErrTooLarge", err)
		}
	})
	t.Run("big results are cut by bytes", func(t *testing.T) {
		// 40 results of 100 KiB in one chunk: the node sends them as
		// several messages, all but the last as requests.
		got, err := pool.Map(ctx, remote, fill, ints(40), pool.ChunkSize(40))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if len(v) != 100<<10 || v[0] != byte(i) || v[len(v)-1] != byte(i) {
				t.Fatalf("Map(fill)[%d]: %d bytes starting %d", i, len(v), v[0])
			}
		}
	})
	// The client acked every part once it held its results: the
	// work-queue stream is empty and nothing waits for an ack.
	settled(t, s.URL(), "same")
}

var (
	firstByte = pool.Register("cluster.firstbyte", func(b []byte) (int, error) { return int(b[0]), nil })
	fill      = pool.Register("cluster.fill", func(x int) ([]byte, error) {
		return bytes.Repeat([]byte{byte(x)}, 100<<10), nil
	})
)

// settled fails t unless namespace ns's stream holds no message and its
// consumer waits for no ack, within a few seconds.
func settled(t *testing.T, url, ns string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var msgs uint64
	var pending int
	for range 50 {
		st, err1 := js.Stream(ctx, "MPROC_"+ns)
		cons, err2 := js.Consumer(ctx, "MPROC_"+ns, "nodes")
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		msgs, pending = st.CachedInfo().State.Msgs, cons.CachedInfo().NumAckPending
		if msgs == 0 && pending == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stream MPROC_%s holds %d messages, %d wait for an ack: parts left unacked", ns, msgs, pending)
}

func head(v []int) []int { return v[:min(len(v), 5)] }

func TestNamespacesIsolated(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	a := mustNode(t, urls, "a", 1)
	b := mustNode(t, urls, "b", 1)
	pa := mustConnect(t, &Config{URLs: urls, Namespace: "a", Workers: 2, Memory: true})
	pb := mustConnect(t, &Config{URLs: urls, Namespace: "b", Workers: 2, Memory: true})
	ctx := context.Background()
	for _, tc := range []struct {
		p    *pool.Pool
		node *testNode
	}{{pa, a}, {pb, b}} {
		got, err := pool.Map(ctx, tc.p, where, make([]time.Duration, 200))
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range got {
			if pid != tc.node.Process.Pid {
				t.Fatalf("a task ran on node %d, want only %d of its namespace", pid, tc.node.Process.Pid)
			}
		}
	}
}

// Registered differently in nodes (MPROC_NODE is set while their package
// init runs) and in this client: the node checks names and types itself.
var (
	clientOnly = func() pool.Func[int, int] {
		if os.Getenv(envNode) != "" {
			return pool.Func[int, int]{}
		}
		return pool.Register("cluster.clientonly", func(x int) (int, error) { return x, nil })
	}()
	otherTypes = func() pool.Func[string, int] {
		if os.Getenv(envNode) != "" {
			pool.Register("cluster.types", func(x int) (int, error) { return x, nil })
			return pool.Func[string, int]{}
		}
		return pool.Register("cluster.types", func(s string) (int, error) { return len(s), nil })
	}()
)

func TestFunctionsCheckedOnTheNode(t *testing.T) {
	p := mustConnect(t, &Config{Nodes: 1, NodeWorkers: 1, Memory: true})
	ctx := context.Background()
	if _, err := pool.Apply(ctx, p, clientOnly, 1); !errors.Is(err, pool.ErrUnknownFunc) {
		t.Fatalf("Apply(a function the node lacks) = %v, want ErrUnknownFunc", err)
	}
	_, err := pool.Map(ctx, p, otherTypes, []string{"a", "bb"})
	var te *pool.TaskError
	if !errors.Is(err, pool.ErrFuncMismatch) || !errors.As(err, &te) || te.Node == "" {
		t.Fatalf("Map(a function of other types on the node) = %v, want ErrFuncMismatch naming the node", err)
	}
	t.Logf("%v", err)
}

// TestConfigDefaults: Retries reads as in a local pool (0: never), and a
// negative field is refused with an error naming it.
func TestConfigDefaults(t *testing.T) {
	cfg, err := (&Config{}).withDefaults()
	if err != nil || cfg.Retries != 0 {
		t.Fatalf("zero Config: Retries %d, err %v; want 0 (never redelivered), nil", cfg.Retries, err)
	}
	if _, err := (&Config{Retries: -1}).withDefaults(); err == nil || !strings.Contains(err.Error(), "Retries") {
		t.Fatalf("Retries -1: err %v, want one naming Retries", err)
	}
}
