//go:build linux

package ipc

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/shm"
)

// childEnv selects a child mode when this test binary is re-executed.
const childEnv = "MPROC_IPC_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(leakcheck.Run(m))
}

// item is what queue producers send.
type item struct {
	Producer int32
	Seq      int64
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}

// childSegment attaches the segment the parent passed as MPROC_IPC_FD.
func childSegment() (*shm.Segment, error) {
	return shm.OpenFD(envInt("MPROC_IPC_FD"))
}

func runChild(mode string) error {
	ctx := context.Background()
	seg, err := childSegment()
	if err != nil {
		return err
	}
	defer seg.Close()
	switch mode {
	case "queue-producer":
		// Put N items (forever if N is 0) tagged with ID.
		b, _ := hex.DecodeString(os.Getenv("MPROC_IPC_QUEUE"))
		var q Queue[item]
		if err := q.UnmarshalBinary(b); err != nil {
			return err
		}
		id, n := int32(envInt("MPROC_IPC_ID")), int64(envInt("MPROC_IPC_N"))
		for i := int64(0); n == 0 || i < n; i++ {
			if err := q.Put(ctx, item{id, i}); err != nil {
				return fmt.Errorf("put %d: %w", i, err)
			}
		}
		return q.Detach()
	case "queue-consumer":
		// Take N items, then stay alive without consuming until killed (or
		// detach and exit if MPROC_IPC_EXIT is set).
		b, _ := hex.DecodeString(os.Getenv("MPROC_IPC_QUEUE"))
		var q Queue[item]
		if err := q.UnmarshalBinary(b); err != nil {
			return err
		}
		for i := range envInt("MPROC_IPC_N") {
			if _, err := q.Get(ctx); err != nil {
				return fmt.Errorf("get %d: %w", i, err)
			}
		}
		if os.Getenv("MPROC_IPC_EXIT") != "" {
			return q.Detach()
		}
		time.Sleep(time.Minute)
		return nil
	case "ring-echo":
		// Echo every message of ring A back on ring B until A closes.
		a, b, err := childRings(seg)
		if err != nil {
			return err
		}
		if os.Getenv("MPROC_IPC_SLEEP") != "" {
			a.SetSpin(0)
		}
		buf := make([]byte, 0, a.MaxMessage())
		poll := os.Getenv("MPROC_IPC_POLL") != "" // pure spinning: TryGet in a loop, never sleep
		for {
			if poll {
				buf, err = a.TryGet(buf)
				if errors.Is(err, ErrEmpty) {
					continue
				}
			} else {
				buf, err = a.Get(ctx, buf)
			}
			if errors.Is(err, os.ErrClosed) {
				return b.Close()
			}
			if err != nil {
				return err
			}
			if err := b.Put(ctx, buf); err != nil {
				return err
			}
		}
	case "ring-sink":
		// Drain ring A until closed, then report the count and byte total on B.
		a, b, err := childRings(seg)
		if err != nil {
			return err
		}
		buf := make([]byte, 0, a.MaxMessage())
		var n, total uint64
		for {
			buf, err = a.Get(ctx, buf)
			if errors.Is(err, os.ErrClosed) {
				return b.Put(ctx, []byte(fmt.Sprintf("%d %d", n, total)))
			}
			if err != nil {
				return err
			}
			n++
			total += uint64(len(buf))
		}
	case "sem-wait":
		// Sleep in Wait on the Semaphore at the start of the segment until
		// killed.
		s, err := AttachSemaphore(seg.Bytes()[:SemaphoreSize])
		if err != nil {
			return err
		}
		return s.Wait(ctx)
	case "sem-pingpong":
		// N rounds: wait on the Semaphore at 0, post the one at 64.
		a, b, err := childSemaphores(seg)
		if err != nil {
			return err
		}
		for i := range envInt("MPROC_IPC_N") {
			if err := a.Wait(ctx); err != nil {
				return fmt.Errorf("wait %d: %w", i, err)
			}
			pingPongPause(i)
			b.Post()
		}
		return nil
	case "notifier-pingpong":
		// N rounds: wait on the Notifier at 0 for an odd turn, make it
		// even, notify the one at 64.
		a, b, turn, err := childNotifiers(seg)
		if err != nil {
			return err
		}
		for i := range uint32(envInt("MPROC_IPC_N")) {
			if err := awaitTurn(ctx, a, turn, 2*i+1); err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			pingPongPause(int(i))
			turn.Store(2*i + 2)
			b.Notify()
		}
		return nil
	case "ring-exit":
		// Attach, then exit at once: the parent's blocked Put must notice.
		_, _, err := childRings(seg)
		return err
	case "uds-sink":
		// Read until EOF, then reply with the byte count.
		c, err := childConn()
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		var total uint64
		for {
			n, err := c.Read(buf)
			total += uint64(n)
			if err != nil {
				var out [8]byte
				binary.LittleEndian.PutUint64(out[:], total)
				_, err = c.Write(out[:])
				return err
			}
		}
	case "uds-echo":
		c, err := childConn()
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, envInt("MPROC_IPC_SIZE"))
		for {
			if _, err := readFull(c, buf); err != nil {
				return nil // parent closed
			}
			if _, err := c.Write(buf); err != nil {
				return nil
			}
		}
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// pingPongSize is the segment size of the ping-pong tests: two 64-byte
// event objects and a turn word on a line of its own.
const pingPongSize = 3 * lineSize

func childSemaphores(seg *shm.Segment) (a, b *Semaphore, err error) {
	mem := seg.Bytes()
	if a, err = AttachSemaphore(mem[:SemaphoreSize]); err != nil {
		return nil, nil, err
	}
	if b, err = AttachSemaphore(mem[lineSize : lineSize+SemaphoreSize]); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

func childNotifiers(seg *shm.Segment) (a, b *Notifier, turn *atomic.Uint32, err error) {
	mem := seg.Bytes()
	if a, err = AttachNotifier(mem[:NotifierSize]); err != nil {
		return nil, nil, nil, err
	}
	if b, err = AttachNotifier(mem[lineSize : lineSize+NotifierSize]); err != nil {
		return nil, nil, nil, err
	}
	return a, b, view[atomic.Uint32](mem[2*lineSize:]), nil
}

// pingPongPause makes every other round of a ping-pong outlast the peer's
// 50 µs poll, so that the peer is asleep on the futex when the hand-off
// comes: both the polling and the sleeping paths are exercised.
func pingPongPause(round int) {
	if round%2 == 1 {
		time.Sleep(100 * time.Microsecond)
	}
}

// awaitTurn waits on n, the Notifier protocol way, until *turn == want.
func awaitTurn(ctx context.Context, n *Notifier, turn *atomic.Uint32, want uint32) error {
	for {
		key := n.Prepare()
		if turn.Load() == want {
			n.Cancel()
			return nil
		}
		if err := n.Wait(ctx, key); err != nil {
			return err
		}
	}
}

// childConn is the socket the parent passed as MPROC_IPC_SOCK.
func childConn() (net.Conn, error) {
	f := os.NewFile(uintptr(envInt("MPROC_IPC_SOCK")), "sock")
	defer f.Close()
	return net.FileConn(f)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// twoRings lays out ring A (parent to child) and ring B (child to parent)
// back to back in one segment, as pool does per worker.
func twoRings(seg *shm.Segment, cfg *RingConfig) (a, b *Ring, err error) {
	n := RingSize(cfg)
	mem := seg.Bytes()
	if a, err = NewRing(mem[:n], cfg); err != nil {
		return nil, nil, err
	}
	if b, err = NewRing(mem[n:2*n], cfg); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

func childRings(seg *shm.Segment) (a, b *Ring, err error) {
	n := envInt("MPROC_IPC_RINGSIZE")
	mem := seg.Bytes()
	if a, err = AttachRing(mem[:n]); err != nil {
		return nil, nil, err
	}
	if b, err = AttachRing(mem[n : 2*n]); err != nil {
		return nil, nil, err
	}
	a.SetPeer(os.Getppid())
	b.SetPeer(os.Getppid())
	return a, b, nil
}

// mustSegment creates a segment closed at cleanup.
func mustSegment(tb testing.TB, size int) *shm.Segment {
	tb.Helper()
	seg, err := shm.New("ipctest", size)
	if err != nil {
		tb.Fatalf("shm.New: %v", err)
	}
	tb.Cleanup(func() { seg.Close() })
	return seg
}

// exec0 starts a child with sock inherited as MPROC_IPC_SOCK.
func exec0(tb testing.TB, mode string, seg *shm.Segment, sock *os.File, size int) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fd := seg.AddToCmd(cmd)
	sockFD := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, sock)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "MPROC_IPC_FD="+strconv.Itoa(fd),
		"MPROC_IPC_SOCK="+strconv.Itoa(sockFD), "MPROC_IPC_SIZE="+strconv.Itoa(size))
	return startCmd(tb, cmd)
}

// startChild re-executes the test binary in mode with seg inherited and
// extra environment; the child is killed and reaped at cleanup.
func startChild(tb testing.TB, mode string, seg *shm.Segment, env ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fd := seg.AddToCmd(cmd)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "MPROC_IPC_FD="+strconv.Itoa(fd))
	cmd.Env = append(cmd.Env, env...)
	return startCmd(tb, cmd)
}

// startCmd starts cmd with Pdeathsig; it is killed and reaped at cleanup.
func startCmd(tb testing.TB, cmd *exec.Cmd) *exec.Cmd {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start child: %v", err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// waitChild waits for cmd with a deadline and fails on a non-zero exit.
func waitChild(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("child %d: %v", cmd.Process.Pid, err)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		tb.Errorf("child %d still running after 60s", cmd.Process.Pid)
	}
}
