package pool

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/leakcheck"
)

func TestMain(m *testing.M) {
	// Simulates a binary whose TestMain forgot Init (see TestMissingInit):
	// the worker child then runs no tests and exits.
	if os.Getenv("MPROC_TEST_NOINIT") != "" && os.Getenv(envWorker) != "" {
		// The worker of that binary holds what a worker inherits (its
		// link segment and bell) without using them: no leak check.
		os.Exit(m.Run())
	}
	Init()
	if mode := os.Getenv("MPROC_TEST_CHILD"); mode != "" {
		os.Exit(testChild(mode))
	}
	os.Exit(leakcheck.Run(m))
}

// testChild runs helper-process modes for tests that need a parent of
// their own.
func testChild(mode string) int {
	switch mode {
	case "gobworker":
		return gobWorker()
	case "parent":
		// Start a pool, report its workers, then wait to be killed.
		p, err := New(&Config{Workers: 2, NoPin: true})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		for _, s := range p.Stats() {
			fmt.Println(s.Pid)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0
	}
	return 2
}

// Functions the tests run in workers, registered at package init.
var (
	cube   = Register("test.cube", func(x int) (int, error) { return x * x * x, nil })
	noop   = Register("test.noop", func(struct{}) (struct{}, error) { return struct{}{}, nil })
	getPid = Register("test.pid", func(int) (int, error) { return os.Getpid(), nil })
	sleep  = Register("test.sleep", func(d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})
	sleepEcho = Register("test.sleepecho", func(d delayed) (int, error) {
		time.Sleep(d.D)
		return d.I, nil
	})
	boom = Register("test.panic", func(x int) (int, error) {
		if x == 3 {
			var m map[string]int
			m["x"]++ // assignment to entry in nil map
		}
		return x, nil
	})
	failOdd = Register("test.failodd", func(x int) (int, error) {
		if x%2 == 1 {
			return 0, errors.New("odd " + strconv.Itoa(x))
		}
		return x, nil
	})
	work = Register("test.work", func(x int) (int, error) {
		for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
		}
		return 3*x + 1, nil
	})
	spin = Register("test.spin", func(n int) (int, error) {
		s := 0
		for i := range n {
			s += i ^ (s >> 3)
		}
		return s, nil
	})
	initCount int
	initOnce  = Register("test.init", func(struct{}) (struct{}, error) {
		initCount++
		return struct{}{}, nil
	})
	initCalledBy = Register("test.initcount", func(struct{}) (int, error) { return initCount, nil })
	initFail     = Register("test.initfail", func(struct{}) (struct{}, error) { return struct{}{}, errors.New("no database") })
)

// killPid sends SIGKILL to pid.
func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

type delayed struct {
	I int
	D time.Duration
}
