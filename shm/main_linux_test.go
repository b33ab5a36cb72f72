package shm

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/fdpass"
	"github.com/mproc/mproc/internal/leakcheck"
	"golang.org/x/sys/unix"
)

// childEnv selects a child mode when the test binary re-executes itself.
const childEnv = "MPROC_SHM_TEST_CHILD"

func TestMain(m *testing.M) {
	// Child dispatch comes first, before m.Run: a child never runs tests.
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(leakcheck.Run(m))
}

// Child modes. Each reports failures on stderr and through its exit status.
func runChild(mode string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "child %s: "+format+"\n", append([]any{mode}, args...)...)
		return 2
	}
	fd, _ := strconv.Atoi(os.Getenv("MPROC_SHM_TEST_FD"))
	switch mode {
	case "echo": // read the parent's greeting, answer after it
		s, err := OpenFD(fd)
		if err != nil {
			return fail("OpenFD: %v", err)
		}
		b := s.Bytes()
		if got := string(b[:len(parentGreeting)]); got != parentGreeting {
			return fail("read %q, want %q", got, parentGreeting)
		}
		copy(b[len(parentGreeting):], childGreeting)
		if err := s.Close(); err != nil {
			return fail("Close: %v", err)
		}
		return 0
	case "frozen": // every way to write a frozen segment must be refused
		s, err := OpenFD(fd)
		if err != nil {
			return fail("OpenFD: %v", err)
		}
		defer s.Close()
		if !s.Frozen() {
			return fail("Frozen() = false")
		}
		if _, err := unix.Mmap(int(s.File().Fd()), 0, HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != unix.EPERM {
			return fail("writable mmap error = %v, want EPERM", err)
		}
		if _, err := s.File().WriteAt([]byte("x"), HeaderSize); !errorsIs(err, unix.EPERM) {
			return fail("WriteAt error = %v, want EPERM", err)
		}
		if got := string(s.Bytes()[:len(parentGreeting)]); got != parentGreeting {
			return fail("read %q, want %q", got, parentGreeting)
		}
		return 0
	case "hold": // attach, touch, say ready, wait to be killed
		s, err := OpenFD(fd)
		if err != nil {
			return fail("OpenFD: %v", err)
		}
		s.Bytes()[0] = 1
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return fail("not killed")
	case "dropped": // drop a created segment unclosed: its cleanup must call fdpass.Closed once
		closed := make(chan uint64, 2)
		fdpass.Closed = func(id uint64) { closed <- id }
		id := dropSegment()
		deadline := time.After(10 * time.Second)
		for {
			runtime.GC()
			select {
			case got := <-closed:
				if got != id {
					return fail("Closed(%#x), want Closed(%#x)", got, id)
				}
				time.Sleep(100 * time.Millisecond)
				runtime.GC()
				if len(closed) != 0 {
					return fail("Closed called twice")
				}
				return 0
			case <-deadline:
				return fail("Closed not called for a dropped segment")
			case <-time.After(10 * time.Millisecond):
			}
		}
	case "named": // create a named segment, say ready, wait to be killed
		s, err := CreateNamed(os.Getenv("MPROC_SHM_TEST_NAME"), 4096)
		if err != nil {
			return fail("CreateNamed: %v", err)
		}
		copy(s.Bytes(), parentGreeting)
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return fail("not killed")
	}
	return fail("unknown mode")
}

// dropSegment creates a segment and drops it without Close, returning its
// id (in a function of its own, so that nothing on the caller's stack keeps
// it reachable).
//
//go:noinline
func dropSegment() uint64 {
	s, err := New("dropped", 64)
	if err != nil {
		panic(err)
	}
	return s.ID()
}

const (
	parentGreeting = "hello from the parent;"
	childGreeting  = "hello from the child"
)

// child is a re-executed test binary in one child mode.
type child struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr strings.Builder
}

// startChild starts the test binary in mode with seg (if any) inherited, and
// registers a cleanup that kills and reaps it.
func startChild(tb testing.TB, mode string, seg *Segment, env ...string) *child {
	tb.Helper()
	c := &child{cmd: exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")}
	c.cmd.Env = append(os.Environ(), append(env, childEnv+"="+mode)...)
	if seg != nil {
		fd := seg.AddToCmd(c.cmd)
		c.cmd.Env = append(c.cmd.Env, "MPROC_SHM_TEST_FD="+strconv.Itoa(fd))
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	c.stdout = bufio.NewReader(out)
	if err := c.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	return c
}

// wait reaps the child and fails tb unless it exited 0.
func (c *child) wait(tb testing.TB) {
	tb.Helper()
	if err := c.cmd.Wait(); err != nil {
		tb.Fatalf("child: %v\n%s", err, c.stderr.String())
	}
}

// waitReady reads the child's "ready" line.
func (c *child) waitReady(tb testing.TB) {
	tb.Helper()
	line, err := c.stdout.ReadString('\n')
	if line != "ready\n" {
		tb.Fatalf("child said %q (%v), want ready\n%s", line, err, c.stderr.String())
	}
}

// kill9 SIGKILLs the child and reaps it.
func (c *child) kill9(tb testing.TB) {
	tb.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	c.cmd.Wait() // "signal: killed" is the expected outcome
}
