package cpus_test

import (
	"fmt"

	"github.com/mproc/mproc/internal/cpus"
)

// A two-socket machine with two cores per socket and two SMT threads per
// core, numbered as Linux numbers most Intel servers. Six workers: one per
// physical core first, alternating sockets, then SMT siblings.
func ExampleTopology_Layout() {
	var t cpus.Topology
	for id := range 8 {
		t.CPUs = append(t.CPUs, cpus.CPU{ID: id, Package: (id / 2) % 2, Core: id % 2})
	}
	plan, err := t.Layout(6, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range plan {
		fmt.Println(p)
	}
	// Output:
	// worker 0 -> cpu 0 (package 0, core 0, thread 0)
	// worker 1 -> cpu 2 (package 1, core 0, thread 0)
	// worker 2 -> cpu 1 (package 0, core 1, thread 0)
	// worker 3 -> cpu 3 (package 1, core 1, thread 0)
	// worker 4 -> cpu 4 (package 0, core 0, thread 1)
	// worker 5 -> cpu 6 (package 1, core 0, thread 1)
}

// An explicit CPU list is checked against the CPUs the plan may use.
func ExampleTopology_Layout_explicit() {
	t := cpus.Topology{CPUs: []cpus.CPU{{ID: 0}, {ID: 1, Core: 1}}}
	plan, _ := t.Layout(3, []int{1})
	fmt.Println(plan)
	_, err := t.Layout(1, []int{1, 7})
	fmt.Println(err)
	// Output:
	// [worker 0 -> cpu 1 (package 0, core 1, thread 0) worker 1 -> cpu 1 (package 0, core 1, thread 0) worker 2 -> cpu 1 (package 0, core 1, thread 0)]
	// lay out workers: cpu 7: cpu not in this process's affinity mask (allowed: 0-1)
}
