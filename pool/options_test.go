package pool

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigRejectsNonsense(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative MaxTasksPerWorker", Config{MaxTasksPerWorker: -1}, "Config.MaxTasksPerWorker is negative"},
		{"negative TaskTimeout", Config{TaskTimeout: -time.Second}, "Config.TaskTimeout is negative"},
		{"negative Retries", Config{Retries: -1}, "Config.Retries is negative"},
		{"negative ChunkSize", Config{ChunkSize: -4}, "Config.ChunkSize is negative"},
		{"negative Workers", Config{Workers: -2}, "Config.Workers = -2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.NoPin = true
			p, err := New(&cfg)
			if err == nil {
				p.Terminate()
				t.Fatalf("New(%+v) = nil error, want %q", tt.cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestCallOptions(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	t.Run("a negative option fails the call", func(t *testing.T) {
		for _, o := range []CallOption{ChunkSize(-1), TaskTimeout(-1), Retries(-1)} {
			if _, err := Map(ctx, p, cube, []int{1}, o); err == nil || !strings.Contains(err.Error(), "negative") {
				t.Errorf("Map with %+v = %v, want a negative-option error", o, err)
			}
		}
	})
	t.Run("a per-call timeout on a pool without one", func(t *testing.T) {
		_, err := Apply(ctx, p, sleep, 10*time.Second, TaskTimeout(100*time.Millisecond))
		if !errors.Is(err, ErrTaskTimeout) {
			t.Fatalf("Apply = %v, want ErrTaskTimeout", err)
		}
		if v, err := Apply(ctx, p, cube, 2); v != 8 || err != nil {
			t.Fatalf("Apply after the timeout = %v, %v; want 8", v, err)
		}
	})
	t.Run("a per-call chunk size", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 100})
		out, err := Map(ctx, p, cube, []int{1, 2, 3, 4, 5, 6, 7}, ChunkSize(3))
		if err != nil || len(out) != 7 || out[6] != 343 {
			t.Fatalf("Map(ChunkSize(3)) = %v, %v", out, err)
		}
		// The worker timed each message: 3, 3 and 1 tasks.
		var sizes []int
		for _, m := range p.Stats()[0].Slowest {
			sizes = append(sizes, m.Tasks)
		}
		slices.Sort(sizes)
		if want := []int{1, 3, 3}; !slices.Equal(sizes, want) {
			t.Fatalf("message sizes %v, want %v", sizes, want)
		}
	})
}

func TestProgress(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	ctx := context.Background()
	const n = 100
	args := make([]int, n)
	var dones, totals []int
	record := Progress(func(done, total int) { dones, totals = append(dones, done), append(totals, total) })
	if _, err := Map(ctx, p, cube, args, record, ChunkSize(7)); err != nil {
		t.Fatal(err)
	}
	if len(dones) != n {
		t.Fatalf("Map: %d progress calls, want %d", len(dones), n)
	}
	for i := range dones {
		if dones[i] != i+1 || totals[i] != n {
			t.Fatalf("Map: progress call %d = (%d, %d), want (%d, %d)", i, dones[i], totals[i], i+1, n)
		}
	}
	dones, totals = nil, nil
	for _, err := range Imap(ctx, p, cube, slices.Values(args), record) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(dones) != n || dones[n-1] != n || totals[n-1] != n {
		t.Fatalf("Imap: progress %v / %v, want %d calls ending at (%d, %d)", dones, totals, n, n, n)
	}
	for i, tot := range totals {
		if tot != -1 && tot != n {
			t.Fatalf("Imap: progress call %d has total %d, want -1 or %d", i, tot, n)
		}
	}
}

func TestWorkerInsights(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	for _, d := range []time.Duration{30 * time.Millisecond, 10 * time.Millisecond} {
		if _, err := Apply(ctx, p, sleep, d); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		if _, err := Map(ctx, p, cube, make([]int, 50), ChunkSize(10)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(40 * time.Millisecond) // waiting for work
	s := p.Stats()[0]
	if s.StartUp <= 0 || s.StartUp > 10*time.Second {
		t.Errorf("StartUp = %v, want the time the worker took to start", s.StartUp)
	}
	if s.Tasks != 402 {
		t.Errorf("Tasks = %d, want 402", s.Tasks)
	}
	if s.Busy < 40*time.Millisecond || s.Idle < 40*time.Millisecond {
		t.Errorf("Busy = %v, Idle = %v; want at least 40ms each", s.Busy, s.Idle)
	}
	if len(s.Slowest) != slowest {
		t.Fatalf("Slowest = %v, want %d entries", s.Slowest, slowest)
	}
	if top := s.Slowest[0]; top.Func != "test.sleep" || top.Index != 0 || top.Tasks != 1 || top.Took < 30*time.Millisecond {
		t.Errorf("Slowest[0] = %+v, want the 30ms sleep", top)
	}
	if next := s.Slowest[1]; next.Took < 10*time.Millisecond || next.Took > s.Slowest[0].Took {
		t.Errorf("Slowest[1] = %+v, want the 10ms sleep", next)
	}
	for i := 2; i < slowest; i++ {
		if e := s.Slowest[i]; e.Func != "test.cube" || e.Tasks != 10 || e.Took > s.Slowest[i-1].Took {
			t.Errorf("Slowest[%d] = %+v, want a chunk of 10 cubes, no slower than the one before", i, e)
		}
	}
}
