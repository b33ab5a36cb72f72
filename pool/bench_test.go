package pool

import (
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// goPool is the baseline a Go user writes without processes: worker
// goroutines fed by a channel, one item per send.
type goPool struct {
	in chan goJob
	wg sync.WaitGroup
}

type goJob struct {
	x   int
	out *int
	wg  *sync.WaitGroup
}

func newGoPool(n int, f func(int) int) *goPool {
	p := &goPool{in: make(chan goJob, 1024)}
	for range n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range p.in {
				*j.out = f(j.x)
				j.wg.Done()
			}
		}()
	}
	return p
}

func (p *goPool) mapInts(args, out []int) {
	var wg sync.WaitGroup
	wg.Add(len(args))
	for i, x := range args {
		p.in <- goJob{x: x, out: &out[i], wg: &wg}
	}
	wg.Wait()
}

func (p *goPool) close() { close(p.in); p.wg.Wait() }

// execPool is the other baseline: worker processes started with os/exec,
// fed over stdin/stdout pipes with encoding/gob streams, one task per round
// trip per worker.
type execPool struct {
	cmds []*exec.Cmd
	encs []*gob.Encoder
	decs []*gob.Decoder
}

func newExecPool(tb testing.TB, n int) *execPool {
	p := &execPool{}
	for range n {
		cmd := exec.Command("/proc/self/exe", "-test.run=^$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), "MPROC_TEST_CHILD=gobworker")
		cmd.Stderr = os.Stderr
		dieWithParent(cmd)
		w, _ := cmd.StdinPipe()
		r, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		p.cmds = append(p.cmds, cmd)
		p.encs = append(p.encs, gob.NewEncoder(w))
		p.decs = append(p.decs, gob.NewDecoder(r))
	}
	return p
}

func (p *execPool) mapInts(args, out []int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for k := range p.cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(args) {
					return
				}
				p.encs[k].Encode(args[i])
				p.decs[k].Decode(&out[i])
			}
		}()
	}
	wg.Wait()
}

func (p *execPool) close() {
	for _, c := range p.cmds {
		c.Process.Kill()
		c.Wait()
	}
}

// gobWorker is the execPool child: cube every int read from stdin.
func gobWorker() int {
	dec, enc := gob.NewDecoder(os.Stdin), gob.NewEncoder(os.Stdout)
	for {
		var x int
		if err := dec.Decode(&x); err != nil {
			if err == io.EOF {
				return 0
			}
			return 1
		}
		enc.Encode(x * x * x)
	}
}

func BenchmarkApply(b *testing.B) {
	b.Run("mproc/noop", func(b *testing.B) {
		p := mustPool(b, &Config{Workers: 1, NoPin: os.Getenv("NOPIN") != ""})
		ctx := context.Background()
		Apply(ctx, p, noop, struct{}{})
		b.ReportAllocs()
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := Apply(ctx, p, noop, struct{}{}); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
		b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
	})
	b.Run("goroutine/noop", func(b *testing.B) {
		gp := newGoPool(1, func(x int) int { return x })
		defer gp.close()
		args, out := []int{1}, []int{0}
		for b.Loop() {
			gp.mapInts(args, out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
	})
}

func BenchmarkMap(b *testing.B) {
	const n = 100_000
	args := make([]int, n)
	for i := range args {
		args[i] = i
	}
	out := make([]int, n)
	report := func(b *testing.B, items int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
	}
	b.Run("mproc/workers=2/n=1e5", func(b *testing.B) {
		p := mustPool(b, &Config{Workers: 2})
		ctx := context.Background()
		for b.Loop() {
			if _, err := Map(ctx, p, cube, args); err != nil {
				b.Fatal(err)
			}
		}
		report(b, n)
	})
	b.Run("goroutine/workers=2/n=1e5", func(b *testing.B) {
		gp := newGoPool(2, func(x int) int { return x * x * x })
		defer gp.close()
		for b.Loop() {
			gp.mapInts(args, out)
		}
		report(b, n)
	})
	b.Run("exec-gob/workers=2/n=1e4", func(b *testing.B) {
		ep := newExecPool(b, 2)
		defer ep.close()
		for b.Loop() {
			ep.mapInts(args[:10_000], out)
		}
		report(b, 10_000)
	})
}

func BenchmarkNew(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				p, err := New(&Config{Workers: w})
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/new")
		})
	}
}

// BenchmarkIdlePool measures what a pool of 6 idle workers costs the
// parent: its CPU time (getrusage, all threads) per wall-clock second, as
// parent-cpu-%. Each op is 100 ms of idleness.
func BenchmarkIdlePool(b *testing.B) {
	mustPool(b, &Config{Workers: 6})
	time.Sleep(100 * time.Millisecond) // past the workers' start-up
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	cpu0, start := cpu(), time.Now()
	for b.Loop() {
		time.Sleep(100 * time.Millisecond)
	}
	b.ReportMetric(float64(cpu()-cpu0)/float64(time.Since(start))*100, "parent-cpu-%")
}

// BenchmarkOversubscribed compares CPU-bound throughput of 6 workers on the
// 2 CPUs with 2 workers.
func BenchmarkOversubscribed(b *testing.B) {
	args := make([]int, 600)
	for i := range args {
		args[i] = 200_000
	}
	for _, w := range []int{2, 6} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			p := mustPool(b, &Config{Workers: w, ChunkSize: 1})
			ctx := context.Background()
			for b.Loop() {
				if _, err := Map(ctx, p, spin, args); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(args)*b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

// BenchmarkKillRecovery reports how long a SIGKILLed worker takes to be
// noticed (its running task fails) and replaced (a task runs again).
func BenchmarkKillRecovery(b *testing.B) {
	p := mustPool(b, &Config{Workers: 1, Retries: 0})
	ctx := context.Background()
	var noticed, replaced time.Duration
	for b.Loop() {
		pid, err := Apply(ctx, p, getPid, 0)
		if err != nil {
			b.Fatal(err)
		}
		r := ApplyAsync(context.Background(), p, sleep, time.Minute)
		time.Sleep(2 * time.Millisecond)
		start := time.Now()
		killPid(pid)
		if _, err := r.Get(ctx); err == nil {
			b.Fatal("task survived its worker's death")
		}
		noticed += time.Since(start)
		if pid2, err := Apply(ctx, p, getPid, 0); err != nil || pid2 == pid {
			b.Fatal(pid2, err)
		}
		replaced += time.Since(start)
	}
	b.ReportMetric(float64(noticed.Microseconds())/1000/float64(b.N), "ms-noticed")
	b.ReportMetric(float64(replaced.Microseconds())/1000/float64(b.N), "ms-replaced")
}

// BenchmarkCancelLatency reports how long a running RegisterCtx task takes
// to see its context cancelled after Result.Cancel (ms-to-task: measured by
// the task's own clock read, written to shared memory) and how long until
// the worker runs the next task (ms-until-free).
func BenchmarkCancelLatency(b *testing.B) {
	p := mustPool(b, &Config{Workers: 1})
	ctx := context.Background()
	seen := mustSeen(b, 1)
	var toTask, toCaller time.Duration
	for b.Loop() {
		s := seen.Slice()
		s[0], s[1] = 0, 0
		r := ApplyAsync(ctx, p, waitCtx, cancelArg{Seen: seen, D: time.Minute})
		waitSeen(b, seen, 0, 0, 10*time.Second)
		start := time.Now()
		r.Cancel()
		waitSeen(b, seen, 0, 1, 10*time.Second)
		toTask += time.Duration(s[1] - start.UnixNano())
		// The worker is free once the task returned: a round trip shows it.
		if _, err := Apply(ctx, p, cube, 1); err != nil {
			b.Fatal(err)
		}
		toCaller += time.Since(start)
	}
	b.ReportMetric(float64(toTask.Microseconds())/1000/float64(b.N), "ms-to-task")
	b.ReportMetric(float64(toCaller.Microseconds())/1000/float64(b.N), "ms-until-free")
}
