package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mproc/mproc/pool"
)

// Section 8: where processes beat goroutines, measured. Two cases Go users
// ask about: a task that crashes the process, and a workload that
// allocates so much that the garbage collector is the bottleneck.

// crashTask runs task i; task crashAt unlocks an unlocked mutex, a Go
// fatal error ("fatal error: sync: unlock of unlocked mutex", as a
// concurrent map write is) that no recover catches: it ends the process
// it runs in.
func crashTask(i int) (int, error) {
	if i == crashAt {
		// The runtime prints the fatal error and every goroutine's stack
		// on fd 2, whatever SetTraceback says; the demo shows the
		// message itself from the goroutine run, so keep the tour quiet.
		if os.Getenv(crashMode) == "" {
			os.Stderr.Close()
		}
		var mu sync.Mutex
		mu.Unlock()
	}
	time.Sleep(5 * time.Millisecond)
	return i * i, nil
}

const crashAt, crashTasks = 3, 8

var crash = pool.Register("demo.crash", crashTask) // not Idempotent: never re-run

// crashMode is the environment variable that makes the demo binary run
// crashGoroutines instead of the tour: the goroutine version of the crash
// runs in a child so that the demo survives to report it.
const crashMode = "MPROC_DEMO_CRASH_GOROUTINES"

// crashGoroutines runs the crash tasks on goroutines, printing each
// result; it does not return (the crash ends the process first).
func crashGoroutines() {
	var wg sync.WaitGroup
	for i := range crashTasks {
		wg.Go(func() {
			v, _ := crashTask(i)
			fmt.Printf("task %d = %d\n", i, v)
		})
	}
	wg.Wait()
	os.Exit(0)
}

// allocTask builds and walks binary trees (the binary-trees benchmark): a
// task that is mostly allocation and garbage collection.
func allocTask(depth int) (int, error) {
	sum := 0
	for range 8 {
		sum += check(build(depth))
	}
	return sum, nil
}

type node struct{ l, r *node }

func build(d int) *node {
	if d == 0 {
		return &node{}
	}
	return &node{build(d - 1), build(d - 1)}
}

func check(n *node) int {
	if n.l == nil {
		return 1
	}
	return 1 + check(n.l) + check(n.r)
}

var alloc = pool.Register("demo.alloc", allocTask)

func sectionBeat(w io.Writer, cfg *config) error {
	if err := beatCrash(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return beatAlloc(w, cfg)
}

// beatCrash runs crashTasks tasks, one of which hits a Go fatal error, with
// goroutines (in a child process: it dies) and with a pool (one worker
// dies, the others' results arrive).
func beatCrash(w io.Writer) error {
	fmt.Fprintf(w, "%d tasks; task %d unlocks an unlocked mutex, a Go fatal error that recover cannot catch\n", crashTasks, crashAt)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), crashMode+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("the goroutine version survived its crash: %v", err)
	}
	fatal := "?"
	for sc := bufio.NewScanner(&stderr); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "fatal error:") {
			fatal = sc.Text()
			break
		}
	}
	fmt.Fprintf(w, "  goroutines: the program died (%s, %q) after %d of %d results\n",
		ee.ProcessState, fatal, strings.Count(stdout.String(), "\n"), crashTasks)

	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		return err
	}
	defer p.Close()
	ok := 0
	var lost error
	for _, err := range pool.Imap(context.Background(), p, crash, slices.Values([]int{0, 1, 2, 3, 4, 5, 6, 7}), pool.ChunkSize(1)) {
		if err != nil {
			lost = err
			continue
		}
		ok++
	}
	restarts := 0
	for _, s := range p.Stats() {
		restarts += s.Restarts
	}
	var we *pool.WorkerError
	if !errors.As(lost, &we) {
		return fmt.Errorf("the crashing task gave %v, want a *pool.WorkerError", lost)
	}
	fmt.Fprintf(w, "  mproc pool:  %d of %d results; task %d failed alone: worker %d exited with code %d; %d worker replaced\n",
		ok, crashTasks, we.Index, we.Pid, we.Code, restarts)
	return nil
}

// beatAlloc times allocTask over goroutines and over worker processes,
// k of each, k the largest of -procs that this machine can run at once.
func beatAlloc(w io.Writer, cfg *config) error {
	k := min(slices.Max(cfg.procs), runtime.GOMAXPROCS(0))
	const depth = 16
	tasks := make([]int, 4*k)
	for i := range tasks {
		tasks[i] = depth
	}
	p, err := pool.New(&pool.Config{Workers: k})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	if _, err := pool.Map(ctx, p, alloc, tasks[:k]); err != nil { // warm up
		return err
	}
	var procs, gors []time.Duration
	for range max(cfg.reps, 3) {
		start := time.Now()
		if _, err := pool.Map(ctx, p, alloc, tasks, pool.ChunkSize(1)); err != nil {
			return err
		}
		procs = append(procs, time.Since(start))
		start = time.Now()
		goroutineMap(k, tasks)
		gors = append(gors, time.Since(start))
	}
	mp, mg := median(procs), median(gors)
	fmt.Fprintf(w, "%d allocation-heavy tasks (binary trees of depth %d, 8 times each), %d at a time; median of %d runs\n",
		len(tasks), depth, k, len(procs))
	fmt.Fprintf(w, "  goroutines (one heap, one GC):    %s\n", fmtDur(mg))
	fmt.Fprintf(w, "  processes (a heap and GC each):   %s\n", fmtDur(mp))
	switch {
	case mp < mg:
		fmt.Fprintf(w, "  processes win by %.2fx: each worker collects only its own garbage\n", float64(mg)/float64(mp))
	default:
		fmt.Fprintf(w, "  goroutines win by %.2fx: with %d CPUs the shared collector keeps up here\n", float64(mp)/float64(mg), runtime.GOMAXPROCS(0))
	}
	return nil
}

// goroutineMap runs allocTask over tasks on k goroutines.
func goroutineMap(k int, tasks []int) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for d := range next {
				allocTask(d)
			}
		})
	}
	for _, d := range tasks {
		next <- d
	}
	close(next)
	wg.Wait()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
