package pool

import (
	"fmt"
	"time"

	"github.com/mproc/mproc/internal/cpus"
)

// Config tunes a Pool. A nil *Config means every default.
type Config struct {
	// Workers is the number of worker processes. Zero means the number
	// of CPUs this process may use (its affinity mask, capped by a cgroup
	// CPU quota), as GOMAXPROCS does.
	Workers int

	// CPUs lists the CPUs to pin workers to: worker i runs on
	// CPUs[i%len(CPUs)]. Nil means one worker per physical core first,
	// then SMT siblings, from the CPUs this process may use.
	CPUs []int

	// NoPin leaves workers unpinned: the kernel schedules them anywhere.
	// False (the default) pins every thread of each worker to its CPU.
	NoPin bool

	// MaxTasksPerWorker replaces a worker after it has run this many tasks
	// (Python's maxtasksperchild). Zero means never; negative is an error.
	MaxTasksPerWorker int

	// Initializer is a registered function that every worker runs once
	// before its first task (Python's initializer). An error or panic there
	// fails New. The zero Func means none.
	Initializer Func[struct{}, struct{}]

	// TaskTimeout kills and replaces a worker whose task runs longer; the
	// task fails with ErrTaskTimeout and is not retried. A RegisterCtx
	// task is asked first: its context is cancelled, and its worker is
	// killed only if the task has not returned 100 ms later. With a
	// timeout, Map sends one task per message unless ChunkSize is set, in
	// which case a chunk of k tasks may run k×TaskTimeout. Zero means no
	// limit; negative is an error. The TaskTimeout call option overrides it.
	TaskTimeout time.Duration

	// Retries is how many times a task whose worker died (killed, crashed,
	// out of memory) is run again on another worker before the caller gets
	// a *WorkerError. Only tasks of functions registered with the
	// Idempotent option are ever run again: any other task may have had
	// effects before its worker died, so it fails at once, as in Python.
	// Zero (the default) means never; negative is an error. A task the
	// dead worker had not begun runs elsewhere whatever this says. The
	// Retries call option overrides it.
	Retries int

	// ChunkSize is how many tasks of a Map, MapAsync or Imap call travel
	// in one message. Zero means automatic (guided): each chunk holds the
	// tasks not yet chunked divided by 2×Workers, at most 4096, so many
	// small tasks travel in few messages while the last chunks hold one
	// task each and no worker is left with a long tail. Python's Pool.map
	// uses a fixed len(args)/(4×Workers) instead; set it to get that.
	// Chunks never hold more than 4096 tasks: a larger ChunkSize means 4096.
	// Negative is an error. The ChunkSize call option overrides it.
	ChunkSize int
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Workers < 0 {
		return cfg, fmt.Errorf("pool: Config.Workers = %d, want >= 0", cfg.Workers)
	}
	if cfg.Workers == 0 {
		cfg.Workers = cpus.DefaultWorkers()
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxTasksPerWorker", int64(cfg.MaxTasksPerWorker)},
		{"TaskTimeout", int64(cfg.TaskTimeout)},
		{"Retries", int64(cfg.Retries)},
		{"ChunkSize", int64(cfg.ChunkSize)},
	} {
		if f.v < 0 {
			return cfg, fmt.Errorf("pool: Config.%s is negative (%d): zero means %s", f.name, f.v, zeroMeans[f.name])
		}
	}
	return cfg, nil
}

// zeroMeans says what a zero Config field means, for the errors that
// reject negative ones.
var zeroMeans = map[string]string{
	"MaxTasksPerWorker": "never replace",
	"TaskTimeout":       "no limit",
	"Retries":           "never retry",
	"ChunkSize":         "automatic",
}

// Placement says where a worker runs.
type Placement struct {
	Worker  int // worker index
	CPU     int // Linux CPU number it is pinned to; -1 if not pinned
	Package int // the CPU's package (socket)
	Core    int // the CPU's core within its package
	Thread  int // 0 for the core's first hardware thread, 1 for its SMT sibling, ...
}

// WorkerStats describes one worker slot, as mpire's worker insights: where
// its time went and which tasks were slowest. A slot keeps its index and
// CPU across replacements; its counts and times add up over them.
type WorkerStats struct {
	Worker   int
	Pid      int // current process; 0 while being replaced
	CPU      int // -1 if not pinned
	Tasks    int64
	Busy     time.Duration // time spent running tasks, measured in the worker
	Idle     time.Duration // time its processes were up and not running tasks: waiting for work
	StartUp  time.Duration // how long its current (or last) process took to start and be ready
	Restarts int           // replacements after deaths, timeouts, panics or MaxTasksPerWorker
	// Slowest lists its slowest task messages so far, slowest first, at
	// most 5. A message holds one task unless the call was chunked.
	Slowest []TaskTime
}

// TaskTime is how long a worker took over one task message.
type TaskTime struct {
	Func  string        // the registered function
	Index int           // index in its call of the message's first task
	Tasks int           // tasks in the message
	Took  time.Duration // measured in the worker
}

// slowest is how many task times WorkerStats.Slowest keeps.
const slowest = 5

func layout(cfg Config) ([]Placement, error) {
	out := make([]Placement, cfg.Workers)
	if cfg.NoPin {
		for i := range out {
			out[i] = Placement{Worker: i, CPU: -1}
		}
		return out, nil
	}
	pl, err := cpus.Layout(cfg.Workers, cfg.CPUs)
	if err != nil {
		return nil, fmt.Errorf("pool: lay out workers (set Config.NoPin to skip pinning): %w", err)
	}
	for i, p := range pl {
		out[i] = Placement{Worker: p.Worker, CPU: p.CPU, Package: p.Package, Core: p.Core, Thread: p.Thread}
	}
	return out, nil
}
