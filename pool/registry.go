package pool

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/mproc/mproc/internal/codec"
)

// Func is a typed handle on a function registered with Register. It is a
// small value: copy it freely. The zero Func names no function.
type Func[A, R any] struct {
	e *entry
}

// Name returns the name f was registered under.
func (f Func[A, R]) Name() string {
	if f.e == nil {
		return ""
	}
	return f.e.name
}

// entry is one registered function, erased to bytes in and bytes out so the
// worker loop and the transports need no type parameters.
type entry struct {
	name  string
	sig   uint64 // fingerprint of the argument and result types
	types string // "A -> R", for error messages
	// registeredAt is the Register call's PC and fnPC the function's:
	// where and returned name them when a message needs to. Symbolizing
	// them at every Register cost a worker's start-up 10 µs per function
	// (every worker runs every Register of the program).
	registeredAt, fnPC uintptr
	// call decodes an argument, runs the function and appends the encoded
	// result to dst. It does not recover panics: the worker loop does.
	call func(ctx context.Context, dst, arg []byte) ([]byte, error)
	// ctx says the function takes a context (RegisterCtx): the worker
	// watches for the parent's abort while it runs.
	ctx bool
	// zero runs the function on the zero argument (Config.Initializer).
	zero func() error
	// idempotent says a task may run again after its worker died
	// (Idempotent); the parent reads it, never the worker.
	idempotent bool
}

// RegisterOption adjusts a function at registration; see Idempotent.
type RegisterOption struct {
	idempotent bool
}

// Idempotent says that running a task of the function twice does no harm,
// so one whose worker died mid-task may be run again, up to
// Config.Retries (or the Retries call option) times. Without it a task
// that began runs at most once, as in Python: its worker's death fails it
// with a *WorkerError.
func Idempotent() RegisterOption { return RegisterOption{idempotent: true} }

var registry struct {
	mu     sync.Mutex
	byName map[string]*entry
	closed bool // set by Init: workers could not see later registrations
}

// Register makes fn callable in workers under name and returns its typed
// handle. Call it at package initialisation (a package-level var or init
// function), never inside main: a worker re-executes the binary and only
// sees functions registered before main runs. Names are explicit because
// all instantiations of a generic function share one runtime name. A
// function that should see cancellation registers with RegisterCtx
// instead; the Idempotent option lets a task run again after its worker
// died.
//
// Register panics if name is empty, longer than 255 bytes (the limit of
// the wire format) or already registered (naming both registration sites),
// or if it is called after Init.
//
// A and R travel between processes through the package's codec: raw bytes
// for fixed-size pointer-free types, CBOR otherwise (exported fields only).
// shm.Array and ipc.Queue handles in A are resolved in the worker without
// copying their data.
func Register[A, R any](name string, fn func(A) (R, error), opts ...RegisterOption) Func[A, R] {
	if fn == nil {
		panic("pool: Register needs a name and a function")
	}
	return register(name, fn, func(_ context.Context, a A) (R, error) { return fn(a) }, false, opts)
}

// RegisterCtx is Register for a function that takes a context first. In
// the worker that context is cancelled when the task's call ends early:
// the caller's context ends (ApplyAsync, MapAsync, Imap), Result.Cancel
// runs, another task fails a fail-fast call, or the task's time is up
// (Config.TaskTimeout, then its worker is killed 100 ms later unless it
// returned). It is seen within about a millisecond (a watcher polls the
// parent's abort flag while such a task runs). Terminate cancels it too,
// then kills its worker 100 ms later unless it returned. Cancellation is
// cooperative: a task that ignores it runs on until then.
func RegisterCtx[A, R any](name string, fn func(context.Context, A) (R, error), opts ...RegisterOption) Func[A, R] {
	if fn == nil {
		panic("pool: RegisterCtx needs a name and a function")
	}
	return register(name, fn, fn, true, opts)
}

func register[A, R any](name string, orig any, fn func(context.Context, A) (R, error), takesCtx bool, opts []RegisterOption) Func[A, R] {
	if name == "" {
		panic("pool: Register needs a name and a function")
	}
	if len(name) > maxNameLen {
		panic(fmt.Sprintf("pool: Register(%.40q...): name of %d bytes, over the %d-byte limit", name, len(name), maxNameLen))
	}
	// The codecs are made on first use, once: every worker runs every
	// Register of the program at start-up, and building the plans there
	// was most of the pool package's share of a worker's start. (A zero
	// Codec would look its plan up on every call: a sync.Map lookup per
	// item, a fifth of a tiny task's cost.)
	var made atomic.Pointer[codecPair[A, R]]
	codecs := func() *codecPair[A, R] {
		if c := made.Load(); c != nil {
			return c
		}
		c := &codecPair[A, R]{codec.For[A](), codec.For[R]()} // a race makes two equal pairs
		made.Store(c)
		return c
	}
	ta, tr := reflect.TypeFor[A](), reflect.TypeFor[R]()
	e := &entry{
		name:         name,
		types:        ta.String() + " -> " + tr.String(),
		registeredAt: caller(),
		fnPC:         reflect.ValueOf(orig).Pointer(),
		ctx:          takesCtx,
		call: func(ctx context.Context, dst, arg []byte) ([]byte, error) {
			cs := codecs()
			a, err := cs.arg.DecodeValue(arg)
			if err != nil {
				return dst, fmt.Errorf("decode argument %s: %w", ta, err)
			}
			r, err := fn(ctx, a)
			if err != nil {
				return dst, err
			}
			out, err := cs.res.Append(dst, r)
			if err != nil && errors.Is(err, codec.ErrTooLarge) {
				return dst, errResultTooLarge
			}
			return out, err
		},
	}
	if takesCtx {
		e.types = "ctx, " + e.types // a Register'ed twin is another function
	}
	e.zero = func() error {
		var a A
		_, err := fn(context.Background(), a)
		return err
	}
	e.sig = fingerprint(name, e.types)
	for _, o := range opts {
		e.idempotent = e.idempotent || o.idempotent
	}

	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.closed {
		panic(fmt.Sprintf("pool: Register(%q) at %s after pool.Init: functions registered inside main cannot exist in a worker; register at package init", name, e.where()))
	}
	if registry.byName == nil {
		registry.byName = make(map[string]*entry)
	}
	if old, ok := registry.byName[name]; ok {
		panic(fmt.Sprintf("pool: Register(%q) twice: at %s and at %s", name, old.where(), e.where()))
	}
	registry.byName[name] = e
	return Func[A, R]{e: e}
}

// codecPair is a registered function's argument and result codecs.
type codecPair[A, R any] struct {
	arg codec.Codec[A]
	res codec.Codec[R]
}

// errResultTooLarge is what entry.call returns for a result over the
// codec's limit; the worker reports it as stTooLarge.
var errResultTooLarge = errors.New("pool: result too large")

// lookup finds the function a task names and checks its types. When it
// cannot run the task it returns the item status to report and the detail
// the parent adds to the status's sentinel.
func lookup(name string, sig uint64) (e *entry, status uint8, detail string) {
	registry.mu.Lock()
	e = registry.byName[name]
	registry.mu.Unlock()
	switch {
	case e == nil:
		return nil, stUnknown, ""
	case e.sig != sig:
		return nil, stMismatch, fmt.Sprintf("%q is %s in the worker", name, e.types)
	}
	return e, stOK, ""
}

func closeRegistry() {
	registry.mu.Lock()
	registry.closed = true
	registry.mu.Unlock()
}

func fingerprint(name, types string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(types))
	return h.Sum64()
}

// funcPlace names fn and its source position, for the TaskError.Stack of
// the errors it returns. It is worked out once, at Register: by the time a
// task's error reaches the worker loop, the frames that returned it are
// gone, and the function that did is what the reader needs.
// returned names the registered function and where it is: the
// TaskError.Stack of an error it returns.
func (e *entry) returned() string {
	f := runtime.FuncForPC(e.fnPC)
	if f == nil {
		return ""
	}
	file, line := f.FileLine(f.Entry())
	return fmt.Sprintf("error returned by %s\n\t%s:%d", f.Name(), file, line)
}

// where is the file:line of the Register call, for the panics of
// duplicate and late registrations.
func (e *entry) where() string {
	if e.registeredAt == 0 {
		return "unknown place"
	}
	f, _ := runtime.CallersFrames([]uintptr{e.registeredAt}).Next()
	return fmt.Sprintf("%s:%d", f.File, f.Line)
}

// caller returns the PC of register's caller's caller: the Register call.
func caller() uintptr {
	var pc [1]uintptr
	// Skip Callers, caller, register, Register.
	if runtime.Callers(4, pc[:]) < 1 {
		return 0
	}
	return pc[0]
}

// runInitializer runs Config.Initializer in a worker.
func runInitializer(name string) (err error) {
	registry.mu.Lock()
	e := registry.byName[name]
	registry.mu.Unlock()
	if e == nil {
		return fmt.Errorf("initializer: %w: %q", ErrUnknownFunc, name)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("initializer %q: %w: %v", name, ErrPanic, r)
		}
	}()
	if err := e.zero(); err != nil {
		return fmt.Errorf("initializer %q: %w", name, err)
	}
	return nil
}
