package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mproc/mproc/cluster"
	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
	"github.com/mproc/mproc/shm"
)

// demoNodes is how many node processes the cluster section starts.
const demoNodes = 3

// sectionCluster runs the seed's sweep through a 3-server NATS cluster
// and demoNodes node processes (this binary in node mode), then again while
// one node is SIGKILLed and one server shut down mid-sweep; each row is
// checked bit-identical to the serial sweep and timed beside a local pool.
func sectionCluster(w io.Writer, cfg *config) (err error) {
	ctx := context.Background()
	servers, err := cluster.StartServers(3)
	if err != nil {
		return err
	}
	var urls, ports []string
	for _, s := range servers {
		urls = append(urls, s.URL())
		ports = append(ports, s.URL()[strings.LastIndexByte(s.URL(), ':')+1:])
	}
	defer func() {
		for _, s := range servers {
			err = errors.Join(err, s.Close()) // stops it and removes its store
		}
	}()
	fmt.Fprintf(w, "3 NATS servers with JetStream on 127.0.0.1, ports %s; the stream has 3 replicas\n", strings.Join(ports, ", "))

	var nodes []*exec.Cmd
	defer func() { err = errors.Join(err, stopNodes(nodes)) }()
	for i := range demoNodes {
		n, err := startDemoNode(urls, i)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	fmt.Fprintf(w, "%d nodes (this binary in node mode, 1 worker each, unpinned): pids %v\n\n", demoNodes, pids(nodes))

	p, err := cluster.Connect(ctx, &cluster.Config{URLs: urls, Namespace: "demo", Workers: demoNodes, Replicas: 3, Retries: 2, AckWait: 2 * time.Second})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	local, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, local.Close()) }()

	samples, err := kde.NormalSamples(cfg.n, stdMean, stdCov, cfg.seed)
	if err != nil {
		return err
	}
	shared, err := kde.ShareSamples(samples)
	if err != nil {
		return err
	}
	defer shared.Close()

	fmt.Fprintf(w, "%s kernel; every row is compared with the serial sweep bit for bit\n\n", cfg.kernel)
	fmt.Fprintf(w, "%-62s %10s %16s  %s\n", "row", "cluster", "local pool of 2", "= serial")
	var last time.Duration // the cluster's time of the last row
	row := func(label string, samples []float64, shared *shm.Array[float64], widths []float64, during func()) error {
		want, err := kde.Sweep(samples, origin, widths, cfg.kernel)
		if err != nil {
			return err
		}
		lt, err := timeSweep(ctx, local, shared, widths, cfg.kernel, want)
		if err != nil {
			return fmt.Errorf("local pool: %w", err)
		}
		if during != nil {
			go during()
		}
		last, err = timeSweep(ctx, p, shared, widths, cfg.kernel, want)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		fmt.Fprintf(w, "%-62s %10v %16v  yes\n", label, last.Round(time.Millisecond), lt.Round(time.Millisecond))
		return nil
	}
	widths := kde.Linspace(1.0, 1.2, cfg.widths)
	if err := row(fmt.Sprintf("n = %d, %d widths (samples shipped once per node)", cfg.n, cfg.widths), samples, shared, widths, nil); err != nil {
		return err
	}
	if err := row(fmt.Sprintf("n = %d, %d widths (samples cached on the nodes)", cfg.n, cfg.widths), samples, shared, widths, nil); err != nil {
		return err
	}

	// A sweep long enough to kill things in the middle of it.
	bigN := max(cfg.n, 1_000_000)
	big, err := kde.NormalSamples(bigN, stdMean, stdCov, cfg.seed)
	if err != nil {
		return err
	}
	bigShared, err := kde.ShareSamples(big)
	if err != nil {
		return err
	}
	defer bigShared.Close()
	bigWidths := kde.Linspace(1.0, 1.2, 3*cfg.widths)
	for _, how := range []string{"shipped", "cached"} {
		if err := row(fmt.Sprintf("n = %d, %d widths (samples %s)", bigN, len(bigWidths), how), big, bigShared, bigWidths, nil); err != nil {
			return err
		}
	}
	// Three times as many widths, the kills a third into the time the
	// cached row took: in the middle of the sweep.
	victim := nodes[0]
	at := last / 3
	killed := make(chan string, 1)
	longWidths := kde.Linspace(1.0, 1.2, 3*len(bigWidths))
	if err := row(fmt.Sprintf("n = %d, %d widths, a node and a server killed", bigN, len(longWidths)), big, bigShared, longWidths, func() {
		time.Sleep(at)
		victim.Process.Kill()
		servers[0].Close()
		killed <- fmt.Sprintf("node %d (SIGKILL) and the server on port %s, %v in", victim.Process.Pid, ports[0], at.Round(time.Millisecond))
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nkilled mid-sweep: %s; the sweep completed on the rest\n", <-killed)
	fmt.Fprintln(w, "(a killed node's chunks come back after AckWait = 2 s: that is the extra time)")
	fmt.Fprintln(w, "on exit: nodes drained and reaped, servers stopped, their stores removed")
	return nil
}

func timeSweep(ctx context.Context, p *pool.Pool, shared *shm.Array[float64], widths []float64, k kde.Kernel, want []kde.Point) (time.Duration, error) {
	start := time.Now()
	got, err := kde.SweepPool(ctx, p, shared, origin, widths, k)
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	if !slices.Equal(got, want) {
		return d, errors.New("sweep differs from the serial sweep")
	}
	return d, nil
}

func startDemoNode(urls []string, i int) (*exec.Cmd, error) {
	cmd, err := cluster.NodeCommand(urls, "demo", 1)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, "MPROC_NODE_NAME=demo-node-"+strconv.Itoa(i), "MPROC_NODE_CPUS=none")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	return cmd, nil
}

// stopNodes drains each node (SIGTERM) and reaps it; one killed already
// is only reaped.
func stopNodes(nodes []*exec.Cmd) error {
	var errs []error
	for _, n := range nodes {
		n.Process.Signal(os.Interrupt) // a node drains on SIGINT as on SIGTERM
	}
	for _, n := range nodes {
		done := make(chan error, 1)
		go func() { done <- n.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			n.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("node %d did not drain in 10 s: killed", n.Process.Pid))
		}
	}
	return errors.Join(errs...)
}

func pids(cmds []*exec.Cmd) []int {
	var out []int
	for _, c := range cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}
