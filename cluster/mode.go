package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mproc/mproc/internal/bridge"
	"github.com/mproc/mproc/pool"
)

// Node mode: the program's own binary started with these set serves as a
// node from inside pool.Init (which then exits the process):
//
//	MPROC_NODE=nats://host1:4222,nats://host2:4222  (required: the servers)
//	MPROC_NODE_NAMESPACE=mproc    MPROC_NODE_NAME=host-a
//	MPROC_NODE_WORKERS=0          MPROC_NODE_CREDS=/path/user.creds
//	MPROC_NODE_TASK_TIMEOUT=30s       MPROC_NODE_CPUS=0,1 (or "none": unpinned)
//
// Several nodes on one machine must not pin their workers to the same
// CPUs: give each its own MPROC_NODE_CPUS, or "none".
// SIGTERM or SIGINT drains it: it stops pulling, finishes what it holds
// and exits 0.
const (
	envNode        = "MPROC_NODE"
	envNamespace   = "MPROC_NODE_NAMESPACE"
	envName        = "MPROC_NODE_NAME"
	envWorkers     = "MPROC_NODE_WORKERS"
	envCreds       = "MPROC_NODE_CREDS"
	envTaskTimeout = "MPROC_NODE_TASK_TIMEOUT"
	envCPUs        = "MPROC_NODE_CPUS"
)

func init() {
	bridge.NodeMain = nodeMain
}

func nodeMain() (int, bool) {
	urls, ok := os.LookupEnv(envNode)
	if !ok {
		return 0, false
	}
	cfg := &NodeConfig{URLs: strings.Split(urls, ","), Namespace: os.Getenv(envNamespace), Name: os.Getenv(envName), Pool: &pool.Config{}}
	if v := os.Getenv(envWorkers); v != "" {
		w, err := strconv.Atoi(v)
		if err != nil || w < 0 {
			fmt.Fprintf(os.Stderr, "mproc node: %s=%q: want a worker count\n", envWorkers, v)
			return 2, true
		}
		cfg.Pool.Workers = w
	}
	if v := os.Getenv(envTaskTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mproc node: %s=%q: %v\n", envTaskTimeout, v, err)
			return 2, true
		}
		cfg.Pool.TaskTimeout = d
	}
	switch v := os.Getenv(envCPUs); v {
	case "":
	case "none":
		cfg.Pool.NoPin = true
	default:
		for _, f := range strings.Split(v, ",") {
			c, err := strconv.Atoi(f)
			if err != nil || c < 0 {
				fmt.Fprintf(os.Stderr, "mproc node: %s=%q: want CPU numbers or \"none\"\n", envCPUs, v)
				return 2, true
			}
			cfg.Pool.CPUs = append(cfg.Pool.CPUs, c)
		}
	}
	if v := os.Getenv(envCreds); v != "" {
		cfg.Options = append(cfg.Options, nats.UserCredentials(v))
	}
	for _, k := range []string{envNode, envNamespace, envName, envWorkers, envCreds, envTaskTimeout, envCPUs} {
		os.Unsetenv(k) // the local pool's workers are not nodes
	}
	ctx, stop := signal.NotifyContext(context.Background(), drainSignals...)
	defer stop()
	if err := Serve(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mproc node:", err)
		return 1, true
	}
	return 0, true
}

// NodeEnv returns the environment variables that make this program,
// started with them, a node of namespace ns on the servers at urls.
// workers 0 means one per CPU.
func NodeEnv(urls []string, ns string, workers int) []string {
	env := []string{envNode + "=" + strings.Join(urls, ",")}
	if ns != "" {
		env = append(env, envNamespace+"="+ns)
	}
	if workers > 0 {
		env = append(env, envWorkers+"="+strconv.Itoa(workers))
	}
	return env
}

// NodeCommand returns a command that starts this program as a node of
// namespace ns on the servers at urls (NodeEnv), its stderr this process's.
// On Linux the node is tied to this process as a pool's workers are: it is
// killed when this process dies (SysProcAttr.Pdeathsig), so a parent that
// crashes, or a test binary that times out, leaves no node behind
// reconnecting for good to servers that may have died with it. Add to its
// Env before Start; run nodes meant to outlive you from a service manager.
func NodeCommand(urls []string, ns string, workers int) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cluster: node command: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), NodeEnv(urls, ns, workers)...)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	return cmd, nil
}

// nodeProc is a node process Connect started.
type nodeProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startNode(urls []string, ns string, workers int, unpinned bool) (*nodeProc, error) {
	cmd, err := NodeCommand(urls, ns, workers)
	if err != nil {
		return nil, err
	}
	if unpinned {
		cmd.Env = append(cmd.Env, envCPUs+"=none")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start node: %w", err)
	}
	np := &nodeProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(np.done)
	}()
	return np, nil
}

// stop drains the node (SIGTERM) and waits for it, killing it after 10 s.
func (np *nodeProc) stop() error {
	np.cmd.Process.Signal(drainSignals[0])
	select {
	case <-np.done:
	case <-time.After(10 * time.Second):
		np.cmd.Process.Kill()
		<-np.done
		return errors.New("cluster: a node did not drain in 10 s: killed")
	}
	return nil
}
