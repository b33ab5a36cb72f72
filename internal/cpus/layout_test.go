package cpus

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// intelTwoSocket is 2 packages x 4 cores x 2 SMT threads numbered the way
// Linux numbers most Intel servers: cpus 0-3 package 0 cores 0-3, 4-7
// package 1, 8-15 the second threads in the same order.
func intelTwoSocket() Topology {
	var t Topology
	for id := range 16 {
		t.CPUs = append(t.CPUs, CPU{ID: id, Package: (id / 4) % 2, Core: id % 4})
	}
	return t
}

// amdTwoSocket is the same machine with siblings numbered adjacently
// (cpus 0 and 1 share a core), as on many AMD systems.
func amdTwoSocket() Topology {
	var t Topology
	for id := range 16 {
		t.CPUs = append(t.CPUs, CPU{ID: id, Package: id / 8, Core: (id % 8) / 2})
	}
	return t
}

type coreKey struct{ pkg, core int }

func TestLayoutSpreadsOverPhysicalCores(t *testing.T) {
	for _, tc := range []struct {
		name string
		topo Topology
	}{
		{"intel numbering", intelTwoSocket()},
		{"amd numbering", amdTwoSocket()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.topo.Layout(20, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan) != 20 {
				t.Fatalf("len(Layout(20)) = %d, want 20", len(plan))
			}
			cores := map[coreKey]bool{}
			for _, p := range plan[:8] {
				k := coreKey{p.Package, p.Core}
				if cores[k] {
					t.Errorf("%v shares a physical core with an earlier worker; want 8 distinct cores first", p)
				}
				cores[k] = true
				if p.Thread != 0 {
					t.Errorf("%v: Thread = %d, want 0 before any SMT sibling", p, p.Thread)
				}
			}
			for i, p := range plan[:8] {
				if want := i % 2; p.Package != want {
					t.Errorf("%v: Package = %d, want %d (packages alternate)", p, p.Package, want)
				}
			}
			cpus := map[int]bool{}
			for _, p := range plan[:16] {
				if cpus[p.CPU] {
					t.Errorf("%v reuses a CPU before all 16 are used", p)
				}
				cpus[p.CPU] = true
				if p.Worker >= 8 && p.Thread != 1 {
					t.Errorf("%v: Thread = %d, want 1 (SMT siblings after all cores)", p, p.Thread)
				}
			}
			for _, p := range plan[16:] {
				if first := plan[p.Worker-16]; p.CPU != first.CPU {
					t.Errorf("%v: want cpu %d, wrapping around like worker %d", p, first.CPU, first.Worker)
				}
			}
			for i, p := range plan {
				if p.Worker != i {
					t.Errorf("plan[%d].Worker = %d", i, p.Worker)
				}
			}
		})
	}
}

func TestLayoutSubsetAndOversubscription(t *testing.T) {
	// taskset -c 0,8,9 on the Intel machine: cpus 0 and 8 are one core.
	topo := Topology{CPUs: []CPU{{ID: 8, Package: 0, Core: 0}, {ID: 0, Package: 0, Core: 0}, {ID: 9, Package: 1, Core: 1}}}
	plan, err := topo.Layout(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range plan {
		got = append(got, p.CPU)
	}
	// Cores first (0 on package 0, 9 on package 1), then the sibling 8, wrapping.
	if want := []int{0, 9, 8, 0, 9, 8, 0}; !slices.Equal(got, want) {
		t.Errorf("Layout(7) CPUs = %v, want %v", got, want)
	}
	if plan[2].Thread != 1 {
		t.Errorf("%v: Thread = %d, want 1", plan[2], plan[2].Thread)
	}
}

func TestLayoutExplicit(t *testing.T) {
	topo := intelTwoSocket()
	tests := []struct {
		name     string
		n        int
		explicit []int
		want     []int  // CPUs, when no error
		wantErr  string // substring, when an error
	}{
		{name: "one worker per listed cpu", n: 0, explicit: []int{3, 12}, want: []int{3, 12}},
		{name: "more workers than listed cpus wrap", n: 5, explicit: []int{3, 12}, want: []int{3, 12, 3, 12, 3}},
		{name: "fewer workers use a prefix", n: 1, explicit: []int{5, 6}, want: []int{5}},
		{name: "repeated cpu is kept", n: 0, explicit: []int{2, 2}, want: []int{2, 2}},
		{name: "cpu outside the set", n: 2, explicit: []int{1, 16}, wantErr: "cpu 16: cpu not in this process's affinity mask (allowed: 0-15)"},
		{name: "negative cpu", n: 2, explicit: []int{-1}, wantErr: "cpu -1"},
		{name: "no count and no list", n: 0, wantErr: "positive count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := topo.Layout(tc.n, tc.explicit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Layout(%d, %v) error = %v, want one containing %q", tc.n, tc.explicit, err, tc.wantErr)
				}
				if strings.HasPrefix(tc.wantErr, "cpu ") && !errors.Is(err, ErrNotAllowed) {
					t.Errorf("error %v does not wrap ErrNotAllowed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, p := range plan {
				got = append(got, p.CPU)
				if c := topo.CPUs[p.CPU]; p.Package != c.Package || p.Core != c.Core {
					t.Errorf("%v: want package %d core %d", p, c.Package, c.Core)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Layout(%d, %v) CPUs = %v, want %v", tc.n, tc.explicit, got, tc.want)
			}
		})
	}
}

func TestLayoutBadTopology(t *testing.T) {
	if _, err := (Topology{}).Layout(1, nil); !errors.Is(err, ErrNoCPUs) {
		t.Errorf("empty Topology: Layout = %v, want ErrNoCPUs", err)
	}
	dup := Topology{CPUs: []CPU{{ID: 1}, {ID: 1}}}
	if _, err := dup.Layout(1, nil); err == nil || !strings.Contains(err.Error(), "cpu 1 twice") {
		t.Errorf("duplicate cpu: Layout = %v, want an error naming it", err)
	}
}
