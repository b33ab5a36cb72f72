package pool

import (
	"context"
	"errors"
	"iter"
	"slices"

	"github.com/mproc/mproc/internal/codec"
)

// Result is the pending outcome of ApplyAsync or MapAsync. Its methods are
// safe for concurrent use.
type Result[T any] struct {
	c   *call
	v   T     // the value, written by the call's decoding before it finishes
	err error // a submit error
}

// Get waits until the result is ready or ctx ends. ctx bounds only this
// wait: the call goes on (the context given to ApplyAsync or MapAsync, or
// Cancel, ends it). A task failure is a *TaskError or *WorkerError.
func (r *Result[T]) Get(ctx context.Context) (T, error) {
	var zero T
	if r.err != nil {
		return zero, r.err
	}
	select {
	case <-r.c.done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	r.c.mu.Lock()
	err := r.c.err
	r.c.mu.Unlock()
	if err != nil {
		return zero, err
	}
	return r.v, nil
}

// Cancel ends the call unless it is ready: its tasks not yet begun are
// dropped, the contexts of its running RegisterCtx tasks are cancelled,
// and Get returns context.Canceled. It returns at once; calling it again,
// or on a ready result, does nothing.
func (r *Result[T]) Cancel() {
	if r.c != nil {
		r.c.cancel(context.Canceled)
	}
}

// Ready reports whether Get would return without waiting.
func (r *Result[T]) Ready() bool {
	if r.err != nil {
		return true
	}
	select {
	case <-r.c.done:
		return true
	default:
		return false
	}
}

// Done returns a channel closed when the result is ready.
func (r *Result[T]) Done() <-chan struct{} {
	if r.err != nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return r.c.done
}

func checkFunc(e *entry) error {
	if e == nil {
		return errors.New("pool: zero Func: use the value Register returned")
	}
	return nil
}

// ApplyAsync submits f(arg) and returns at once. arg is encoded before
// ApplyAsync returns: the caller may change it afterwards. When ctx ends
// before the result is ready, the call ends as with Result.Cancel, and Get
// returns ctx.Err().
func ApplyAsync[A, R any](ctx context.Context, p *Pool, f Func[A, R], arg A, opts ...CallOption) *Result[R] {
	if err := checkFunc(f.e); err != nil {
		return &Result[R]{err: err}
	}
	cc, err := resolve(&p.core.cfg, opts)
	if err != nil {
		return &Result[R]{err: err}
	}
	argc, resc := codec.For[A](), codec.For[R]()
	args, err := encodeArgs(f.e, 1, func(dst []byte, _ int) ([]byte, error) { return argc.Append(dst, arg) })
	if err != nil {
		return &Result[R]{err: err}
	}
	c := newCall(f.e, cc, args)
	c.failFast = true
	r := &Result[R]{c: c}
	c.dec = func(_ int, b []byte) error { return resc.Decode(b, &r.v) }
	r.err = p.core.submit(c)
	if r.err == nil {
		c.watch(ctx)
	}
	return r
}

// MapAsync submits f over args and returns at once; the result holds the
// outputs in the order of args. Every argument is encoded before MapAsync
// returns (one that cannot be encoded fails the call at once): the caller
// may reuse args afterwards. The first task to fail (in completion order)
// fails the whole call; its tasks not yet started are dropped, in the
// workers too, and its running RegisterCtx tasks see their context
// cancelled. When ctx ends first, the call ends the same way, with
// ctx.Err().
func MapAsync[A, R any](ctx context.Context, p *Pool, f Func[A, R], args []A, opts ...CallOption) *Result[[]R] {
	if err := checkFunc(f.e); err != nil {
		return &Result[[]R]{err: err}
	}
	cc, err := resolve(&p.core.cfg, opts)
	if err != nil {
		return &Result[[]R]{err: err}
	}
	out := make([]R, len(args))
	c, err := mapCall(f, cc, args, out)
	if err != nil {
		return &Result[[]R]{err: err}
	}
	c.failFast = true
	r := &Result[[]R]{c: c, v: out}
	if len(args) == 0 {
		c.cancel(nil)
		return r
	}
	r.err = p.core.submit(c)
	if r.err == nil {
		c.watch(ctx)
	}
	return r
}

func mapCall[A, R any](f Func[A, R], cc callConfig, args []A, out []R) (*call, error) {
	argc, resc := codec.For[A](), codec.For[R]()
	enc, err := encodeSlice(f.e, argc, args)
	if err != nil {
		return nil, err
	}
	c := newCall(f.e, cc, enc)
	c.dec = func(i int, b []byte) error { return resc.Decode(b, &out[i]) }
	if size := resc.Size(); size > 0 {
		c.resultSize = size
		c.decRun = func(i, n int, body []byte, step int) int {
			k, _ := resc.DecodeStrided(out[i:i+n], body, step)
			return k
		}
	}
	return c, nil
}

// Apply runs f(arg) in a worker and waits for its result. If ctx ends
// first, Apply returns ctx.Err() and the task is dropped if it was not yet
// begun; a running RegisterCtx task sees its context cancelled, any other
// runs on and its result is discarded.
func Apply[A, R any](ctx context.Context, p *Pool, f Func[A, R], arg A, opts ...CallOption) (R, error) {
	// wait cancels the call when ctx ends: no watch needed.
	r := ApplyAsync(context.Background(), p, f, arg, opts...)
	return wait(ctx, r)
}

// Map runs f over args in the workers, batching small tasks (see
// Config.ChunkSize), and returns the results in the order of args. The
// first failure to arrive is returned as a *TaskError or *WorkerError. If
// ctx ends first, Map returns ctx.Err() at once, drops the tasks not yet
// begun and cancels the context of its running RegisterCtx tasks.
func Map[A, R any](ctx context.Context, p *Pool, f Func[A, R], args []A, opts ...CallOption) ([]R, error) {
	return wait(ctx, MapAsync(context.Background(), p, f, args, opts...))
}

func wait[T any](ctx context.Context, r *Result[T]) (T, error) {
	if r.err == nil && r.c != nil {
		r.c.attend() // a blocking caller of a short call waits for its result itself
	}
	v, err := r.Get(ctx)
	if err != nil && r.c != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		r.c.cancel(ctx.Err())
	}
	return v, err
}

// Indexed is one result of ImapUnordered: the value of the task at Index
// in the input sequence.
type Indexed[R any] struct {
	Index int
	Value R
}

// Imap runs f over the items of args, pulled lazily, and yields each
// result in the order of args as soon as it and all before it are done,
// as Python's Pool.imap. It pulls from args only as results are consumed:
// at most 4×Workers chunks of items (a chunk is the ChunkSize option or
// Config.ChunkSize, else 16 items) are pulled and not yet yielded, so a
// generator of millions of items never materialises. Pass a slice as
// slices.Values(xs). A failed task, or an item that cannot be encoded,
// yields that item's error and the sequence goes on. Breaking out of the
// loop, or ctx ending, ends the call: its tasks not yet begun are dropped
// and its running RegisterCtx tasks see their context cancelled. If the
// whole call fails (Terminate, no worker left), the sequence yields that
// error and ends. args is only ever used from the goroutine ranging over
// the result.
func Imap[A, R any](ctx context.Context, p *Pool, f Func[A, R], args iter.Seq[A], opts ...CallOption) iter.Seq2[R, error] {
	return func(yield func(R, error) bool) {
		imap(ctx, p, f, args, true, opts, func(_ int, v R, err error) bool { return yield(v, err) })
	}
}

// ImapUnordered is Imap yielding results in the order they finish, each
// with its index in args. A failure of the whole call has Index -1.
func ImapUnordered[A, R any](ctx context.Context, p *Pool, f Func[A, R], args iter.Seq[A], opts ...CallOption) iter.Seq2[Indexed[R], error] {
	return func(yield func(Indexed[R], error) bool) {
		imap(ctx, p, f, args, false, opts, func(i int, v R, err error) bool { return yield(Indexed[R]{Index: i, Value: v}, err) })
	}
}

type itemResult[R any] struct {
	i   int
	v   R
	err error
}

// reindex gives a batch's item error the item's index in the whole
// sequence. Each item's error is its own value: it is changed in place.
func reindex(err error, i int) error {
	switch e := err.(type) {
	case *TaskError:
		e.Index = i
	case *WorkerError:
		e.Index = i
	}
	return err
}

// imapChunk is Imap's chunk when no ChunkSize is set: small enough that
// results stream, large enough that tiny tasks do not pay a message each.
const imapChunk = 16

// imap runs an Imap call: it pulls batches of a chunk per worker from
// args, each batch one call (split into chunks as Map splits), while
// fewer than 4 batches' items are pulled and not yet yielded.
func imap[A, R any](ctx context.Context, p *Pool, f Func[A, R], args iter.Seq[A], ordered bool, opts []CallOption, yield func(int, R, error) bool) {
	var zero R
	if err := checkFunc(f.e); err != nil {
		yield(-1, zero, err)
		return
	}
	cc, err := resolve(&p.core.cfg, opts)
	if err != nil {
		yield(-1, zero, err)
		return
	}
	chunk := cc.chunkSize()
	if chunk == 0 {
		chunk = imapChunk
	}
	progress := cc.progress
	cc.progress = nil // counted here, across the batches' calls
	batch := chunk * len(p.core.slots)
	bound := 4 * batch
	// Every item pulled sends one result here, and at most bound items are
	// pulled and not yet yielded: the collectors never block on it.
	ch := make(chan itemResult[R], bound)
	failed := make(chan error, 1) // a batch's call ended without its items
	var live []*call
	defer func() {
		for _, c := range live {
			c.cancel(context.Canceled)
		}
	}()
	next, stop := iter.Pull(args)
	defer stop()
	argc, resc := codec.For[A](), codec.For[R]()
	pulled, yielded, received, exhausted := 0, 0, 0, false
	var held map[int]itemResult[R]
	if ordered {
		held = make(map[int]itemResult[R])
	}
	for {
		for !exhausted && pulled-yielded+batch <= bound {
			enc := &encoded{}
			var index []int // the call's item i is args item index[i]
			for len(index) < batch {
				a, ok := next()
				if !ok {
					exhausted = true
					break
				}
				i := pulled
				pulled++
				if err := enc.add(f.e, i, func(dst []byte) ([]byte, error) { return argc.Append(dst, a) }); err != nil {
					ch <- itemResult[R]{i: i, err: err}
					continue
				}
				index = append(index, i)
			}
			if len(index) == 0 {
				continue
			}
			out := make([]R, len(index))
			c := newCall(f.e, cc, enc)
			c.dec = func(i int, b []byte) error { return resc.Decode(b, &out[i]) }
			c.each = func(i int, err error) { ch <- itemResult[R]{i: index[i], v: out[i], err: reindex(err, index[i])} }
			c.ended = func(err error) {
				select {
				case failed <- err:
				default:
				}
			}
			if err := p.core.submit(c); err != nil {
				yield(-1, zero, err)
				return
			}
			live = slices.DeleteFunc(live, func(c *call) bool { return c.finished.Load() })
			live = append(live, c)
		}
		if exhausted && yielded == pulled {
			return
		}
		var r itemResult[R]
		select {
		case r = <-ch:
			if received++; progress != nil {
				total := -1
				if exhausted {
					total = pulled
				}
				progress(received, total)
			}
		case err := <-failed:
			yield(-1, zero, err)
			return
		case <-ctx.Done():
			yield(-1, zero, ctx.Err())
			return
		}
		if !ordered {
			yielded++
			if !yield(r.i, r.v, r.err) {
				return
			}
			continue
		}
		held[r.i] = r
		for {
			h, ok := held[yielded]
			if !ok {
				break
			}
			delete(held, yielded)
			yielded++
			if !yield(h.i, h.v, h.err) {
				return
			}
		}
	}
}
