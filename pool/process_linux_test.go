package pool

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mproc/mproc/internal/leakcheck"
)

func TestProcess(t *testing.T) {
	tests := []struct {
		name    string
		start   func() (*Process, error)
		wantErr error
	}{
		{"returns nil", func() (*Process, error) { return Start(cube, 3) }, nil},
		{"returns an error", func() (*Process, error) { return Start(failOdd, 3) }, nil},
		{"panics", func() (*Process, error) { return Start(boom, 3) }, ErrPanic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.start()
			if err != nil {
				t.Fatal(err)
			}
			if p.Pid() <= 0 || p.Pid() == os.Getpid() {
				t.Fatalf("Pid = %d", p.Pid())
			}
			err = p.Wait()
			switch {
			case tt.name == "returns an error":
				var te *TaskError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), "odd 3") || te.Pid != p.Pid() {
					t.Fatalf("Wait = %v, want TaskError odd 3", err)
				}
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Wait = %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Wait = %v, want %v", err, tt.wantErr)
			}
			if err2 := p.Wait(); err2 != err {
				t.Fatalf("second Wait = %v, want %v", err2, err)
			}
		})
	}
}

func TestProcessKill(t *testing.T) {
	p, err := Start(sleep, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	var we *WorkerError
	var ee *exec.ExitError
	if !errors.As(err, &we) || we.Signal != syscall.SIGKILL || !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want WorkerError(SIGKILL) wrapping *exec.ExitError", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill after exit = %v", err)
	}
}

// TestParentKilled starts a helper process that starts a pool, kills the
// helper with SIGKILL and checks that its workers are gone within a second.
// The test process is their subreaper meanwhile: orphaned, the workers
// become its children, and it reaps them itself (and sees how they ended)
// instead of leaving zombies to a PID 1 that may never reap them, as on a
// minimal VM init.
func TestParentKilled(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	shmBefore, _ := os.ReadDir("/dev/shm")
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "MPROC_TEST_CHILD=parent")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper said %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper reported workers %v", pids)
	}
	if kids := leakcheck.ChildrenOf(cmd.Process.Pid); len(kids) != 2 {
		t.Errorf("helper's children = %v, want its 2 workers", kids)
	}
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	for _, pid := range pids {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err != nil {
				t.Fatalf("wait4(worker %d): %v; want it reparented to this test process", pid, err)
			}
			if got == pid {
				break // dead and reaped: by its parent-death signal or its own exit
			}
			if time.Since(killed) > time.Second {
				syscall.Kill(pid, syscall.SIGKILL)
				unix.Wait4(pid, nil, 0, nil)
				t.Fatalf("worker %d still alive 1s after its parent was killed", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("workers reaped %v after the parent's SIGKILL", time.Since(killed))
	shmAfter, _ := os.ReadDir("/dev/shm")
	if len(shmAfter) > len(shmBefore) {
		t.Errorf("/dev/shm grew: %v -> %v", shmBefore, shmAfter)
	}
}

func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

var byteLen = Register("test.bytelen", func(b []byte) (int, error) { return len(b), nil })

func TestProcessArgumentTooLarge(t *testing.T) {
	if _, err := Start(byteLen, make([]byte, 1<<20)); err == nil || !strings.Contains(err.Error(), "shm.Array") {
		t.Fatalf("Start(1 MiB argument) = %v, want a size error", err)
	}
	p, err := Start(byteLen, make([]byte, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

var (
	bigResult = Register("test.bigresult", func(n int) ([]byte, error) { return make([]byte, n), nil })
	bigError  = Register("test.bigerror", func(n int) (int, error) { return 0, errors.New(strings.Repeat("e", n)) })
)

// TestProcessLargeOutcome: neither a result value nor an error text has to
// fit in one control-socket message.
func TestProcessLargeOutcome(t *testing.T) {
	t.Run("1 MiB result", func(t *testing.T) {
		p, err := Start(bigResult, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	})
	t.Run("100 KiB error text", func(t *testing.T) {
		p, err := Start(bigError, 100<<10)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Wait()
		var te *TaskError
		if !errors.As(err, &te) || te.Pid != p.Pid() || !strings.HasPrefix(te.Err.Error(), "eeee") || !strings.HasSuffix(err.Error(), "(truncated)") {
			t.Fatalf("Wait = %.80v…, want a *TaskError with the text cut short", err)
		}
	})
}

func TestProcessVerdictFits(t *testing.T) {
	out := appendHeader(nil, msgHeader{kind: kindResult, count: 1})
	out = append(out, stPanic)
	var at int
	out, at = beginItem(out)
	out = appendPanic(out, strings.Repeat("p", 50<<10), []byte(strings.Repeat("s", 50<<10)))
	out = endItem(out, at)
	msg, ok := processVerdict([]byte{opResult}, out)
	if ok || len(msg) > ctlMaxMessage {
		t.Fatalf("processVerdict = %d bytes, ok %v; want at most %d, false", len(msg), ok, ctlMaxMessage)
	}
	err := processResult(msg[1:], "f", 1)
	var te *TaskError
	if !errors.As(err, &te) || !errors.Is(err, ErrPanic) || !strings.HasSuffix(te.Stack, "(truncated)") {
		t.Fatalf("processResult = %.80v…, want a panic TaskError with its stack cut short", err)
	}
}
