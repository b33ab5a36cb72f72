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
	// (Python's maxtasksperchild). Zero means never.
	MaxTasksPerWorker int

	// Initializer names a registered function that every worker runs once,
	// with the zero value of its argument, before its first task. An error
	// or panic there fails New. Empty means none.
	Initializer string

	// TaskTimeout kills and replaces a worker whose task runs longer; the
	// task fails with ErrTaskTimeout and is not retried. With a timeout,
	// Map sends one task per message unless ChunkSize is set, in which
	// case a chunk of k tasks may run k×TaskTimeout. Zero means no limit.
	TaskTimeout time.Duration

	// Retries is how many times a task whose worker died (killed, crashed)
	// is run again on another worker before the caller gets a
	// *WorkerError. Zero means 1; negative means never retry.
	Retries int

	// ChunkSize is how many tasks of a Map, MapAsync or Imap call travel
	// in one message. Zero means automatic (guided): each chunk holds the
	// tasks not yet chunked divided by 2×Workers, at most 4096, so many
	// small tasks travel in few messages while the last chunks hold one
	// task each and no worker is left with a long tail. Python's Pool.map
	// uses a fixed len(args)/(4×Workers) instead; set it to get that.
	// Chunks never hold more than 4096 tasks: a larger ChunkSize means 4096.
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
	if cfg.Retries == 0 {
		cfg.Retries = 1
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Initializer != "" && !registered(cfg.Initializer) {
		return cfg, fmt.Errorf("pool: Config.Initializer: %w: %q", ErrUnknownFunc, cfg.Initializer)
	}
	return cfg, nil
}

// Placement says where a worker runs.
type Placement struct {
	Worker  int // worker index
	CPU     int // Linux CPU number it is pinned to; -1 if not pinned
	Package int // the CPU's package (socket)
	Core    int // the CPU's core within its package
	Thread  int // 0 for the core's first hardware thread, 1 for its SMT sibling, ...
}

// WorkerStats describes one worker slot. A slot keeps its index and CPU
// across replacements.
type WorkerStats struct {
	Worker   int
	Pid      int // current process; 0 while being replaced
	CPU      int // -1 if not pinned
	Tasks    int64
	Busy     time.Duration // time spent running tasks, measured in the worker
	Restarts int           // replacements after deaths, timeouts, panics or MaxTasksPerWorker
}

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
