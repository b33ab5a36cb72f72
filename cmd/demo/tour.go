package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mproc/mproc/ipc"
	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

// randStringArgs is rand_string's argument list: the string length, the
// position (section 2 only) and the output queue, which travels to the child
// as a reference to its shared-memory segment.
type randStringArgs struct {
	Length int
	Pos    int
	Out    *ipc.Queue[positioned]
}

// positioned is what section 2's children put on the queue: (pos, string).
type positioned struct {
	Pos int
	S   string
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// Registered at package initialisation, so that they exist in the worker
// processes too: a worker is this binary re-executed, and its main stops at
// pool.Init.
var (
	randStringTask = pool.Register("demo.rand_string", func(a randStringArgs) (struct{}, error) {
		fmt.Printf("parent process: %d\nprocess id: %d\n", os.Getppid(), os.Getpid())
		return struct{}{}, a.Out.Put(context.Background(), positioned{Pos: -1, S: randString(a.Length)})
	})
	randStringPosTask = pool.Register("demo.rand_string_2", func(a randStringArgs) (struct{}, error) {
		return struct{}{}, a.Out.Put(context.Background(), positioned{Pos: a.Pos, S: randString(a.Length)})
	})
	cube = pool.Register("demo.cube", func(x int) (int, error) { return x * x * x, nil })
)

// runFour is the seed's loop: start four processes on task, join them all,
// then take four results from the queue, in finishing order.
func runFour(task pool.Func[randStringArgs, struct{}]) ([]positioned, error) {
	out, err := ipc.NewQueue[positioned](nil)
	if err != nil {
		return nil, err
	}
	defer out.Detach()
	var procs []*pool.Process
	for x := range 4 {
		p, err := pool.Start(task, randStringArgs{Length: 5, Pos: x, Out: out})
		if err != nil {
			for _, p := range procs {
				p.Kill()
				p.Wait()
			}
			return nil, err
		}
		procs = append(procs, p)
	}
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.Wait())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results := make([]positioned, 0, 4)
	for range procs {
		r, err := out.Get(ctx)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

// sectionProcessQueue is the seed's first example: four processes put random
// 5-character strings into one cross-process queue, each printing its
// parent's pid and its own; results arrive in finishing order.
func sectionProcessQueue(w io.Writer, cfg *config) error {
	fmt.Fprintf(w, "this process: %d\n", os.Getpid())
	results, err := runFour(randStringTask)
	if err != nil {
		return err
	}
	strs := make([]string, len(results))
	for i, r := range results {
		strs[i] = r.S
	}
	fmt.Fprintln(w, pyList(strs))
	return nil
}

// sectionOrdered is the seed's second example: the same with positions,
// then sorted.
func sectionOrdered(w io.Writer, cfg *config) error {
	results, err := runFour(randStringPosTask)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, pyTuples(results))
	slices.SortFunc(results, func(a, b positioned) int { return a.Pos - b.Pos })
	fmt.Fprintln(w, pyTuples(results))
	strs := make([]string, len(results))
	for i, r := range results {
		strs[i] = r.S
	}
	fmt.Fprintln(w, pyList(strs))
	return nil
}

// sectionPool is the seed's Pool example: Map(cube, 1..6) =
// [1 8 27 64 125 216], then the ApplyAsync variant.
func sectionPool(w io.Writer, cfg *config) error {
	p, err := pool.New(&pool.Config{Workers: 4})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xs := []int{1, 2, 3, 4, 5, 6}
	results, err := pool.Map(ctx, p, cube, xs)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "pool.Map(ctx, p, cube, 1..6)        =", results)
	pending := make([]*pool.Result[int], len(xs))
	for i, x := range xs {
		pending[i] = pool.ApplyAsync(ctx, p, cube, x)
	}
	output := make([]int, len(xs))
	for i, r := range pending {
		if output[i], err = r.Get(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "[pool.ApplyAsync(ctx, p, cube, x).Get()] =", output)
	return p.Close()
}

func pyList(strs []string) string {
	q := make([]string, len(strs))
	for i, s := range strs {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func pyTuples(rs []positioned) string {
	q := make([]string, len(rs))
	for i, r := range rs {
		q[i] = fmt.Sprintf("(%d, '%s')", r.Pos, r.S)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// sectionToy is the seed's toy example: ten 3-D points, three inside the
// unit cube at the origin.
func sectionToy(w io.Writer, cfg *config) error {
	p, err := kde.Estimate(kde.Toy(), []float64{0, 0, 0}, 1, kde.Hypercube)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "10 points in 3-D, 3 inside the unit cube centred on x = (0, 0, 0), h = 1:")
	fmt.Fprintln(w, "p(x) =", p)
	return nil
}

var (
	origin  = []float64{0, 0}
	stdMean = []float64{0, 0}
	stdCov  = []float64{1, 0, 0, 1}
)

// sectionSweep is the seed's sweep: h = 0.1 .. 1.2 over n standard normal
// samples, printed as the seed printed it, next to the true density.
func sectionSweep(w io.Writer, cfg *config) error {
	samples, err := kde.NormalSamples(cfg.n, stdMean, stdCov, cfg.seed)
	if err != nil {
		return err
	}
	truth, err := kde.NormalDensity(origin, stdMean, stdCov)
	if err != nil {
		return err
	}
	points, err := kde.Sweep(samples, origin, kde.Arange(0.1, 1.3, 0.1), cfg.kernel)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "n = %d samples of the 2-D standard normal (seed %d), %s kernel, x = (0, 0)\n", cfg.n, cfg.seed, cfg.kernel)
	fmt.Fprintln(w, "actual probability density:", pyFloat(truth))
	fmt.Fprintln(w)
	for _, pt := range points {
		line := fmt.Sprintf("h = %s, p(x) = %s", pyFloat(pt.H), pyFloat(pt.P))
		fmt.Fprintf(w, "%-40s seed's p·h = %-16s true %.6f\n", line, pyFloat(pt.P*pt.H), truth)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "p(x) = k/n/h^2. The seed divided by h only (its point_x had shape (2, 1)), so its")
	fmt.Fprintln(w, "table climbs from 0.016 to 0.1685; the column p·h reproduces that shape.")
	return nil
}

// pyFloat formats v as the seed's Python printed numpy floats: 12
// significant digits, and a ".0" on whole numbers.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'g', 12, 64)
	if !strings.ContainsAny(s, ".eIN") {
		s += ".0"
	}
	return s
}
