package cpus_test

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mproc/mproc/internal/cpus"
)

// TestAllowedMatchesProc checks Allowed against the kernel's own rendering
// of the same mask in /proc/self/status.
func TestAllowedMatchesProc(t *testing.T) {
	got, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	masks, err := cpus.ThreadMasks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for tid, m := range masks {
		if !slices.Equal(m, got) {
			t.Errorf("Allowed() = %v, but thread %d has %v", got, tid, m)
		}
	}
	if len(got) != runtime.NumCPU() {
		t.Errorf("len(Allowed()) = %d, runtime.NumCPU() = %d", len(got), runtime.NumCPU())
	}
}

func TestSystemReaders(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	q, err := cpus.Quota()
	if err != nil || q < 0 {
		t.Errorf("Quota() = %v, %v", q, err)
	}
	topo, err := cpus.ReadTopology()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, c := range topo.CPUs {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, allowed) {
		t.Errorf("ReadTopology CPUs = %v, want Allowed() = %v", ids, allowed)
	}
	if w := cpus.DefaultWorkers(); w < 1 || w > len(allowed) && os.Getenv("GOMAXPROCS") == "" {
		t.Errorf("DefaultWorkers() = %d with %d allowed CPUs", w, len(allowed))
	}
	in, err := cpus.ReadInfo()
	if err != nil {
		t.Fatal(err)
	}
	if in.Allowed != len(allowed) || in.AllowedCores < 1 || in.AllowedCores > in.Allowed || in.Quota != q {
		t.Errorf("ReadInfo() = %+v; want Allowed %d, 1..Allowed cores, Quota %v", in, len(allowed), q)
	}
	plan, err := cpus.Layout(len(allowed)+1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan {
		if !slices.Contains(allowed, p.CPU) {
			t.Errorf("%v is outside Allowed() = %v", p, allowed)
		}
	}
	if _, err := cpus.Layout(1, []int{allowed[len(allowed)-1] + 1}); err == nil || !strings.Contains(err.Error(), "allowed: ") {
		t.Errorf("Layout with a CPU outside the mask = %v, want an error naming the allowed set", err)
	}
}
