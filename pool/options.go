package pool

import (
	"fmt"
	"time"
)

// CallOption adjusts one call (Apply, Map, their Async forms, Imap and
// ImapUnordered), where Python takes the same setting per call. Build one
// with ChunkSize, TaskTimeout, Retries or Progress; a call without options
// uses the pool's Config. Options cost nothing when not given.
type CallOption struct {
	set      uint8 // which of the fields below were given
	chunk    int
	timeout  time.Duration
	retries  int
	progress func(done, total int)
}

const (
	optChunk = 1 << iota
	optTimeout
	optRetries
	optProgress
)

// ChunkSize sends n tasks of this call per message, as Config.ChunkSize
// does for every call; 0 means automatic.
func ChunkSize(n int) CallOption { return CallOption{set: optChunk, chunk: n} }

// TaskTimeout limits each task of this call, as Config.TaskTimeout does
// for every call; 0 means no limit.
func TaskTimeout(d time.Duration) CallOption { return CallOption{set: optTimeout, timeout: d} }

// Retries is Config.Retries for this call: how many times a task of an
// Idempotent function whose worker died runs again; 0 means never.
func Retries(n int) CallOption { return CallOption{set: optRetries, retries: n} }

// Progress has fn called each time a task of this call finishes, failed or
// not, with the number finished so far and the call's task count, as
// tqdm or mpire's progress bar would show. For Imap and ImapUnordered it
// counts results received, and total is -1 until the input is exhausted.
// Calls come from a pool goroutine, one at a time, done rising, all before
// the call returns; fn must return quickly and not call into the pool.
// Without it nothing is counted. With it, workers report each range of
// items they finish as they finish it, each report a wake-up of the
// parent, where a Map without it is told once, at its end: for tasks of
// a few microseconds that is the slower choice.
func Progress(fn func(done, total int)) CallOption { return CallOption{set: optProgress, progress: fn} }

// callConfig is a call's settings: the pool's Config overridden by the
// call's options.
type callConfig struct {
	chunk    int
	timeout  time.Duration
	retries  int
	progress func(done, total int)
}

// resolve merges opts over cfg. A negative value is an error, as in Config.
func resolve(cfg *Config, opts []CallOption) (callConfig, error) {
	cc := callConfig{chunk: cfg.ChunkSize, timeout: cfg.TaskTimeout, retries: cfg.Retries}
	for _, o := range opts {
		if o.set&optChunk != 0 {
			cc.chunk = o.chunk
		}
		if o.set&optTimeout != 0 {
			cc.timeout = o.timeout
		}
		if o.set&optRetries != 0 {
			cc.retries = o.retries
		}
		if o.set&optProgress != 0 {
			cc.progress = o.progress
		}
	}
	switch {
	case cc.chunk < 0:
		return cc, fmt.Errorf("pool: ChunkSize(%d) is negative: 0 means automatic", cc.chunk)
	case cc.timeout < 0:
		return cc, fmt.Errorf("pool: TaskTimeout(%v) is negative: 0 means no limit", cc.timeout)
	case cc.retries < 0:
		return cc, fmt.Errorf("pool: Retries(%d) is negative: 0 means never retry", cc.retries)
	}
	return cc, nil
}

// chunkSize is the chunk size for a Map-like call: its ChunkSize, 1 with a
// task timeout (so the timeout applies per task), else 0 for guided.
func (cc *callConfig) chunkSize() int {
	if cc.chunk > 0 {
		return cc.chunk
	}
	if cc.timeout > 0 {
		return 1
	}
	return 0
}
