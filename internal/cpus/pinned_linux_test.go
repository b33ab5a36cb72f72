package cpus_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mproc/mproc/internal/cpus"
)

// runChild is the re-executed test binary's main. It makes extra threads so
// the parent has more than the startup threads to inspect, reports its CPU
// counts, and waits for its stdin to close. Mode "pinned" also fails unless
// the runtime saw exactly one CPU from the start; mode "plain" does not.
func runChild(mode string) int {
	if mode != "pinned" && mode != "plain" {
		fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
		return 2
	}
	release := make(chan struct{})
	var ready sync.WaitGroup
	for range 4 {
		ready.Add(1)
		go func() {
			// A locked goroutine blocked on a channel holds its own thread.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	fmt.Printf("ncpu=%d gomaxprocs=%d\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if mode == "pinned" && runtime.NumCPU() != 1 {
		fmt.Fprintf(os.Stderr, "child: runtime.NumCPU() = %d, want 1\n", runtime.NumCPU())
		return 3
	}
	io.Copy(io.Discard, os.Stdin)
	close(release)
	return 0
}

// pinnedChild is a running child started with StartPinned.
type pinnedChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	line  string // the child's report
}

// startChild starts a child on cpu (cpu < 0: unpinned) and waits for its
// report. On error nothing is left running.
func startChild(cpu int) (*pinnedChild, error) {
	mode := "pinned"
	if cpu < 0 {
		mode = "plain"
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cpus.StartPinned(cmd, cpu); err != nil {
		return nil, fmt.Errorf("StartPinned(cpu %d) = %w", cpu, err)
	}
	c := &pinnedChild{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("read child report: %w", err)
	}
	c.line = strings.TrimSpace(line)
	return c, nil
}

// stop closes the child's stdin, which ends it, and waits for it.
func (c *pinnedChild) stop() error {
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("child (pid %d) exit: %w", c.cmd.Process.Pid, err)
	}
	return nil
}

// mustStartChild is startChild for the test goroutine; Cleanup stops the
// child and fails the test on a bad exit.
func mustStartChild(tb testing.TB, cpu int) *pinnedChild {
	tb.Helper()
	c, err := startChild(cpu)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// checkMasks fails unless every thread of pid has exactly the mask want, and
// pid has at least minThreads threads.
func checkMasks(tb testing.TB, who string, pid int, want []int, minThreads int) {
	tb.Helper()
	masks, err := cpus.ThreadMasks(pid)
	if err != nil {
		tb.Fatal(err)
	}
	if len(masks) < minThreads {
		tb.Errorf("%s has %d threads, want at least %d", who, len(masks), minThreads)
	}
	for tid, got := range masks {
		if !slices.Equal(got, want) {
			tb.Errorf("%s thread %d: Cpus_allowed_list = %v, want %v", who, tid, got, want)
		}
	}
}

func TestStartPinned(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	// The last allowed CPU: with two or more CPUs, a child left unpinned
	// (or pinned on one thread only) shows a wider mask.
	cpu := allowed[len(allowed)-1]
	c := mustStartChild(t, cpu)
	if want := "ncpu=1 gomaxprocs=1"; c.line != want {
		t.Errorf("child reported %q, want %q", c.line, want)
	}
	// The startup threads plus the four locked ones the child made later.
	checkMasks(t, "child", c.cmd.Process.Pid, []int{cpu}, 5)
	checkMasks(t, "parent", os.Getpid(), allowed, 1)
}

func TestStartPinnedConcurrent(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	kids := make([]*pinnedChild, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { kids[i], errs[i] = startChild(allowed[i%len(allowed)]) })
	}
	wg.Wait()
	for i, c := range kids {
		if c != nil {
			t.Cleanup(func() {
				if err := c.stop(); err != nil {
					t.Error(err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("child %d: %v", i, errs[i])
		}
	}
	for i, c := range kids {
		checkMasks(t, fmt.Sprintf("child %d", i), c.cmd.Process.Pid, []int{allowed[i%len(allowed)]}, 5)
	}
	checkMasks(t, "parent", os.Getpid(), allowed, 1)
}

func TestStartPinnedNotAllowed(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	bad := allowed[len(allowed)-1] + 1
	cmd := exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childEnv+"=pinned")
	err = cpus.StartPinned(cmd, bad)
	if !errors.Is(err, cpus.ErrNotAllowed) {
		t.Fatalf("StartPinned(cpu %d) = %v, want ErrNotAllowed", bad, err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("cpu %d", bad)) {
		t.Errorf("error %q does not name cpu %d", err, bad)
	}
	if cmd.Process != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Errorf("StartPinned started a child despite the error")
	}
	checkMasks(t, "parent", os.Getpid(), allowed, 1)
}

func TestStartPinnedUnpinned(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	c := mustStartChild(t, -1)
	checkMasks(t, "unpinned child", c.cmd.Process.Pid, allowed, 1)
}
