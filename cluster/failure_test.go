package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mproc/mproc/pool"
)

// checkOnce checks that the results of ImapUnordered over cube(0..n-1)
// hold every cube exactly once.
func checkOnce(t *testing.T, seq iter.Seq2[pool.Indexed[int], error], n int) {
	t.Helper()
	var got []int
	for v, err := range seq {
		if err != nil {
			t.Fatalf("ImapUnordered() yielded %v", err)
		}
		if v.Value != v.Index*v.Index*v.Index {
			t.Fatalf("ImapUnordered() yielded %d for index %d", v.Value, v.Index)
		}
		got = append(got, v.Value)
	}
	slices.Sort(got)
	if !slices.Equal(got, cubes(n)) {
		t.Fatalf("ImapUnordered() gave %d results, want each of %d cubes exactly once", len(got), n)
	}
}

func TestNodeKilledMidMap(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	victim := mustNode(t, urls, "kill", 1)
	mustNode(t, urls, "kill", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "kill", Workers: 4, Retries: 2, AckWait: time.Second, Memory: true})
	go func() {
		time.Sleep(400 * time.Millisecond)
		victim.Process.Kill()
	}()
	start := time.Now()
	checkOnce(t, pool.ImapUnordered(context.Background(), p, slowCube, slices.Values(ints(1000))), 1000)
	t.Logf("1000 tasks of 2 ms on 2 nodes, one SIGKILLed at 0.4 s: %v", time.Since(start))
}

func TestNodeJoinsMidCall(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "join", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "join", Workers: 8, Memory: true})
	args := make([]time.Duration, 600)
	for i := range args {
		args[i] = 3 * time.Millisecond
	}
	r := pool.MapAsync(context.Background(), p, where, args)
	time.Sleep(300 * time.Millisecond)
	if r.Ready() {
		t.Fatal("the call finished before the second node joined: make it longer")
	}
	late := mustNode(t, urls, "join", 1)
	got, err := r.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if late == nil || !slices.Contains(got, late.Process.Pid) {
		t.Fatalf("the node that joined mid-call ran none of its tasks")
	}
}

func TestMalformedTaskMessage(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "bad", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "bad", Workers: 2, Memory: true})
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n := namesFor("bad")
	terms, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + n.stream + "." + n.consumer)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	valid := []byte{1, 0, 2, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name, subj string
		data       []byte
	}{
		{"garbage", n.task("x1", 0), []byte("hello")},
		{"no items behind a header of two", n.task("x1", 0), append(valid, 3, 'a', 'b', 'c')},
		{"an item longer than the message", n.task("x1", 0), append(append(valid, 1, 'f'), 0xff, 0xff, 0xff, 0x7f)},
		{"a subject without a slot", n.ns + ".task.x1", valid},
		{"empty", n.task("x1", 1), nil},
	} {
		if _, err := js.Publish(ctx, tc.subj, tc.data); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		if _, err := terms.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("%s: no MSG_TERMINATED advisory: %v", tc.name, err)
		}
	}
	// The node lives and serves.
	got, err := pool.Map(ctx, p, cube, ints(100))
	if err != nil || !slices.Equal(got, cubes(100)) {
		t.Fatalf("Map() after malformed messages = %v, %v", head(got), err)
	}
}

// testCaller is a caller process for TestCallerKilled: it maps long
// tasks through the server at url and prints "started" once they run.
func testCaller(url string) int {
	p, err := Connect(context.Background(), &Config{URLs: []string{url}, Namespace: "dead", Workers: 4, AckWait: 2 * time.Second, Memory: true})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go func() {
		args := make([]time.Duration, 2000)
		for i := range args {
			args[i] = 20 * time.Millisecond
		}
		pool.Map(context.Background(), p, nap, args)
	}()
	time.Sleep(300 * time.Millisecond)
	fmt.Println("started")
	time.Sleep(time.Minute)
	return 0
}

func TestCallerKilled(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "dead", 2)
	caller, line := startTestMode(t, "MPROC_TEST_CALLER="+s.URL())
	defer caller.Wait()
	if line != "started" {
		caller.Process.Kill()
		t.Fatalf("caller said %q", line)
	}
	caller.Process.Kill()
	killed := time.Now()

	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	n := namesFor("dead")
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := js.Consumer(ctx, n.stream, n.consumer)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = c.Info(ctx)
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			t.Logf("the dead caller's work was dropped %v after it died", time.Since(killed).Round(time.Millisecond))
			return
		}
		if time.Since(killed) > 8*time.Second {
			t.Fatalf("8 s after the caller died: %d chunks pending, %d held by nodes", info.NumPending, info.NumAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServerKilledMidMap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-server cluster")
	}
	servers, err := StartServers(3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.URL())
	}
	mustNode(t, urls, "ha", 1)
	mustNode(t, slices.Concat(urls[1:], urls[:1]), "ha", 1)
	// The client connects to the server that is killed: it must fail over.
	p := mustConnect(t, &Config{URLs: urls, Namespace: "ha", Workers: 4, Replicas: 3, Retries: 2, AckWait: 2 * time.Second, Options: []nats.Option{nats.DontRandomize()}})
	go func() {
		time.Sleep(500 * time.Millisecond)
		servers[0].Close()
	}()
	start := time.Now()
	checkOnce(t, pool.ImapUnordered(context.Background(), p, slowCube, slices.Values(ints(1000))), 1000)
	t.Logf("1000 tasks of 2 ms on a 3-server cluster, one server killed at 0.5 s: %v", time.Since(start))
	// Once seen under a fully loaded CI run: a part whose publish ack was
	// lost in the fail-over held its slot's sender, and so Close, after
	// the part's results had come. Close must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Join(ctx); errors.Is(err, context.DeadlineExceeded) {
		p.Terminate()
		t.Fatalf("Close after the server's death did not finish within a minute")
	}
}

// TestPublishGivesUpWhenTheBrokerIsGone: with no broker to store its
// parts, a call fails once publishing has been refused for
// publishPatience, naming why, and Close returns: nothing waits for good.
func TestPublishGivesUpWhenTheBrokerIsGone(t *testing.T) {
	defer func(d time.Duration) { publishPatience = d }(publishPatience)
	publishPatience = 2 * time.Second
	s, err := StartServer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := Connect(ctx, &Config{URLs: []string{s.URL()}, Namespace: "gone", Workers: 2})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	s.Close()
	within := func(what string, d time.Duration, f func() error) error {
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(d):
			p.Terminate()
			t.Fatalf("%s did not return within %v of the broker's death", what, d)
			return nil
		}
	}
	err = within("Map", 30*time.Second, func() error {
		_, err := pool.Map(context.Background(), p, cube, ints(50))
		return err
	})
	var we *pool.WorkerError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), errPublishGaveUp.Error()) {
		t.Fatalf("Map with the broker gone = %v, want a *WorkerError saying %q", err, errPublishGaveUp)
	}
	t.Logf("Map with the broker gone: %v", err)
	if err := within("Close", 30*time.Second, p.Close); err != nil {
		t.Logf("Close() = %v", err)
	}
}

// startTestMode starts this test binary with env set (one of the modes
// TestMain serves), tied to this process's life, and returns it with the
// first line it printed, trimmed.
func startTestMode(t *testing.T, env string) (*exec.Cmd, string) {
	t.Helper()
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	dieWithParent(cmd)
	cmd.Env = append(os.Environ(), env)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	return cmd, strings.TrimSpace(line)
}

// killNode kills the node its worker runs under: the chunk is lost
// mid-run, as on a machine that fails.
var killNode = pool.Register("cluster.killnode", func(int) (int, error) {
	if p, err := os.FindProcess(os.Getppid()); err == nil {
		p.Kill()
	}
	time.Sleep(time.Minute)
	return 0, nil
})

func TestMaxDeliverGivesWorkerError(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "lost", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "lost", Workers: 2, AckWait: 500 * time.Millisecond, Memory: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := pool.Apply(ctx, p, killNode, 0)
	var we *pool.WorkerError
	if !errors.As(err, &we) || we.Node != "node-1-lost" || we.Func != "cluster.killnode" {
		t.Fatalf("Apply(a task that kills its node) = %v, want a *WorkerError naming node-1-lost", err)
	}
	t.Logf("%v", err)
}

// TestLongTaskOutlivesAckWait: a task running four times AckWait is not
// taken for a lost one, because its node sends InProgress. Without the
// heartbeat, MaxDeliver 1 (Retries 0) would end the call with a
// *WorkerError after one AckWait.
func TestLongTaskOutlivesAckWait(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	node := mustNode(t, urls, "long", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "long", Workers: 1, AckWait: 500 * time.Millisecond, Memory: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pid, err := pool.Apply(ctx, p, nap, 2*time.Second)
	if err != nil || pid == 0 || pid == node.Process.Pid {
		t.Fatalf("Apply(nap 2s, AckWait 500ms) = %d, %v; want a worker's pid", pid, err)
	}
	settled(t, s.URL(), "long")
}

func TestNodeTaskTimeout(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "slow", 1, envTaskTimeout+"=200ms")
	p := mustConnect(t, &Config{URLs: urls, Namespace: "slow", Workers: 2, Memory: true})
	ctx := context.Background()
	_, err := pool.Apply(ctx, p, nap, 5*time.Second)
	var te *pool.TaskError
	if !errors.Is(err, pool.ErrTaskTimeout) || !errors.As(err, &te) || te.Node == "" {
		t.Fatalf("Apply(a task over the node's TaskTimeout) = %v, want a *TaskError wrapping ErrTaskTimeout naming the node", err)
	}
	// The node replaced its worker and serves on.
	if v, err := pool.Apply(ctx, p, cube, 3); err != nil || v != 27 {
		t.Fatalf("Apply(cube, 3) after a timeout = %v, %v", v, err)
	}
}

func TestCallCancelledDropsItsItems(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	mustNode(t, urls, "cancel", 1)
	p := mustConnect(t, &Config{URLs: urls, Namespace: "cancel", Workers: 2, Memory: true})
	args := make([]time.Duration, 400)
	for i := range args {
		args[i] = 10 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := pool.Map(ctx, p, nap, args); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map() = %v, want DeadlineExceeded", err)
	}
	cancelled := time.Now()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	n := namesFor("cancel")
	for {
		c, err := js.Consumer(context.Background(), n.stream, n.consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Since(cancelled) > 3*time.Second {
			t.Fatalf("3 s after the call was cancelled: %d chunks pending, %d on the node (4 s of work were queued)", info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pool serves on.
	if v, err := pool.Apply(context.Background(), p, cube, 2); err != nil || v != 8 {
		t.Fatalf("Apply(cube, 2) after a cancelled Map = %v, %v", v, err)
	}
}

func TestNodeDrainsOnSIGTERM(t *testing.T) {
	s := mustServer(t)
	urls := []string{s.URL()}
	leaving := mustNode(t, urls, "drain", 1)
	// AckWait far longer than the test: a chunk the leaving node dropped
	// instead of finishing would stall the call.
	p := mustConnect(t, &Config{URLs: urls, Namespace: "drain", Workers: 4, Retries: 2, AckWait: time.Minute, Memory: true})
	args := make([]time.Duration, 40)
	for i := range args {
		args[i] = 50 * time.Millisecond
	}
	r := pool.MapAsync(context.Background(), p, where, args)
	time.Sleep(300 * time.Millisecond)
	staying := mustNode(t, urls, "drain", 1)
	if err := leaving.Process.Signal(drainSignals[0]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got, err := r.Get(ctx)
	if err != nil {
		t.Fatalf("Map() while a node drains = %v", err)
	}
	if st := leaving.exited(); !st.Success() {
		t.Fatalf("drained node exited with %v, want status 0", st)
	}
	if !slices.Contains(got, leaving.Process.Pid) || !slices.Contains(got, staying.Process.Pid) {
		t.Fatalf("tasks ran on %v, want both the leaving and the staying node", got)
	}
}

// testNodeParent is a process that starts one node with NodeCommand,
// prints its pid and waits to be killed.
func testNodeParent(url string) int {
	cmd, err := NodeCommand([]string{url}, "orphan", 1)
	if err != nil {
		return 1
	}
	cmd.Env = append(cmd.Env, envCPUs+"=none")
	if err := cmd.Start(); err != nil {
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	select {}
}

// TestNodeDiesWithItsParent: a node started with NodeCommand goes when the
// process that started it is SIGKILLed; none is left reconnecting (a
// timed-out test binary once left two for half an hour).
func TestNodeDiesWithItsParent(t *testing.T) {
	s := mustServer(t)
	parent, line := startTestMode(t, "MPROC_TEST_NODE_PARENT="+s.URL())
	node, err := strconv.Atoi(line)
	if err != nil {
		parent.Process.Kill()
		parent.Wait()
		t.Fatalf("the parent printed %q, want the node's pid", line)
	}
	parent.Process.Kill()
	parent.Wait()
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(node, 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(node, syscall.SIGKILL)
			t.Fatalf("node %d still runs 10 s after its parent was killed", node)
		}
	}
}
