package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mproc/mproc/pool"
)

// Section 8: where processes beat goroutines, measured. Two cases: a task
// that takes its whole process down, and an allocation-heavy workload whose
// garbage collection goroutines share and processes do not.

// crashKinds are the tasks of the crash case: index crashAt brings its
// process down the way Go programs really die; no recover can stop it.
const crashAt = 3

func crashy(i int) (int, error) {
	if i == crashAt {
		// A panic on a goroutine the task started: no recover in the
		// task's caller can catch it, and the Go runtime ends the process
		// (exit status 2), as it does for concurrent map writes or a
		// stack overflow.
		done := make(chan struct{})
		go func() {
			defer close(done)
			var m map[string]int
			m["boom"]++ // assignment to entry in nil map
		}()
		<-done
	}
	return i * i, nil
}

var crashTask = pool.Register("demo.crashy", crashy)

// envCrashChild makes this binary run the crash case with goroutines and
// exit: the demo runs it as a child so that its death can be shown.
const envCrashChild = "MPROC_DEMO_GOROUTINE_CRASH"

// goroutineCrashChild is the child's main: the same items on goroutines.
func goroutineCrashChild() {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { crashy(i) })
	}
	wg.Wait()
	fmt.Println("all 8 tasks returned") // never printed: the crash ends the process
	os.Exit(0)
}

// allocHeavy builds and walks a linked structure of many small objects:
// work dominated by allocation and garbage collection.
func allocHeavy(n int) (int, error) {
	type node struct {
		next *node
		v    [4]int
	}
	var head *node
	sum := 0
	for round := range 8 {
		head = nil
		for i := range n {
			head = &node{next: head, v: [4]int{i, round}}
		}
		for p := head; p != nil; p = p.next {
			sum += p.v[0]
		}
	}
	return sum, nil
}

var allocTask = pool.Register("demo.allocheavy", allocHeavy)

func sectionIsolation(w io.Writer, cfg *config) error {
	fmt.Fprintln(w, "a) A task that brings its process down (a panic on a goroutine it started):")
	start := time.Now()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envCrashChild+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("goroutine crash child: want it to die, got %v", err)
	}
	fmt.Fprintf(w, "   goroutines: the whole program died after %s (exit status %d, %d bytes of trace); no result survived\n",
		fmtDur(time.Since(start)), ee.ExitCode(), len(out))

	// The crash is retried on no other worker (Retries < 0), and workers
	// print the panic's message without its trace (GOTRACEBACK is read by
	// each worker's runtime when it starts).
	old, had := os.LookupEnv("GOTRACEBACK")
	os.Setenv("GOTRACEBACK", "none")
	p, err := pool.New(&pool.Config{Workers: 2, Retries: -1})
	if had {
		os.Setenv("GOTRACEBACK", old)
	} else {
		os.Unsetenv("GOTRACEBACK")
	}
	if err != nil {
		return err
	}
	defer p.Close()
	start = time.Now()
	args := []int{0, 1, 2, 3, 4, 5, 6, 7}
	ok := 0
	var crashErr error
	for _, err := range pool.Imap(context.Background(), p, crashTask, args) {
		if err != nil {
			crashErr = err
			continue
		}
		ok++
	}
	var we *pool.WorkerError
	if !errors.As(crashErr, &we) {
		return fmt.Errorf("pool crash case: want a *pool.WorkerError, got %v", crashErr)
	}
	took := time.Since(start)
	if v, err := pool.Apply(context.Background(), p, crashTask, 9); err != nil || v != 81 {
		return fmt.Errorf("pool unusable after the crash: %v, %v", v, err)
	}
	fmt.Fprintf(w, "   mproc:      %d of 8 results after %s; task %d failed alone (%s), its worker was replaced and the pool goes on\n",
		ok, fmtDur(took), we.Index, exitWords(we))

	fmt.Fprintln(w, "\nb) Allocation-heavy tasks (8 tasks, each builds 8 lists of 100,000 small objects):")
	const tasks, objects = 8, 100_000
	items := slices.Repeat([]int{objects}, tasks)
	want, _ := allocHeavy(objects)
	goroutines := func() error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad error
		sem := make(chan struct{}, 2)
		for range items {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if v, _ := allocHeavy(objects); v != want {
					mu.Lock()
					bad = errors.New("wrong sum")
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return bad
	}
	processes := func() error {
		got, err := pool.Map(context.Background(), p, allocTask, items)
		if err != nil {
			return err
		}
		for _, v := range got {
			if v != want {
				return errors.New("wrong sum")
			}
		}
		return nil
	}
	var tg, tp []time.Duration
	for range max(cfg.reps, 3) {
		for _, c := range []struct {
			f   func() error
			out *[]time.Duration
		}{{goroutines, &tg}, {processes, &tp}} {
			runtime.GC()
			start := time.Now()
			if err := c.f(); err != nil {
				return err
			}
			*c.out = append(*c.out, time.Since(start))
		}
	}
	mg, mp := medianOf(tg), medianOf(tp)
	fmt.Fprintf(w, "   2 goroutines (one heap, one GC):  %s   (median of %d)\n", fmtDur(mg), len(tg))
	fmt.Fprintf(w, "   2 processes  (a heap and GC each): %s\n", fmtDur(mp))
	switch {
	case mp < mg:
		fmt.Fprintf(w, "   processes win by %.2fx: each worker's collector marks, and stops, only its own heap\n", float64(mg)/float64(mp))
	default:
		fmt.Fprintf(w, "   goroutines win by %.2fx here: the work is too short, or the machine too small, for separate heaps to pay for the hand-off\n", float64(mp)/float64(mg))
	}
	return nil
}

// exitWords describes how a worker ended, in a few words.
func exitWords(we *pool.WorkerError) string {
	if we.Signal != nil {
		return "killed by " + we.Signal.String()
	}
	return fmt.Sprintf("exit status %d", we.Code)
}

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
