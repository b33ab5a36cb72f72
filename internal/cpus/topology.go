package cpus

import (
	"cmp"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// CPU is one logical CPU (hardware thread) as Linux numbers it.
type CPU struct {
	ID      int // Linux CPU number, as in sched_setaffinity(2) and /sys/devices/system/cpu/cpuN
	Package int // physical_package_id: the socket
	Core    int // core_id; logical CPUs with the same Package and Core are SMT siblings
}

// Topology is the set of CPUs workers may be laid out on: normally the CPUs
// in this process's affinity mask, as [ReadTopology] returns them. Build one
// by hand to plan for another machine.
type Topology struct {
	CPUs []CPU
}

// Placement says where one worker runs.
type Placement struct {
	Worker  int // worker index, 0..n-1
	CPU     int // Linux CPU number to pin the worker to
	Package int // the CPU's package (socket)
	Core    int // the CPU's core within the package
	Thread  int // 0 for the core's first allowed hardware thread, 1 for its next SMT sibling, ...
}

// String formats p as "worker 0 -> cpu 2 (package 0, core 1, thread 0)".
func (p Placement) String() string {
	return fmt.Sprintf("worker %d -> cpu %d (package %d, core %d, thread %d)",
		p.Worker, p.CPU, p.Package, p.Core, p.Thread)
}

// Layout plans n workers on t. With explicit empty it spreads them: first one
// worker per physical core, alternating between packages (so two workers on a
// two-socket machine get a socket, a memory controller and an L3 each), then
// the cores' second SMT threads in the same order, and so on; when n exceeds
// the CPUs it wraps around and oversubscribes in the same order. With explicit
// non-empty, worker i runs on explicit[i%len(explicit)]; every listed CPU must
// be in t, or Layout returns an error wrapping [ErrNotAllowed] that names the
// CPU and the allowed set. n <= 0 means len(explicit), which must then be
// non-empty. Layout is a pure function of its arguments.
func (t Topology) Layout(n int, explicit []int) ([]Placement, error) {
	if n <= 0 {
		n = len(explicit)
		if n == 0 {
			return nil, fmt.Errorf("lay out workers: worker count %d: give a positive count or an explicit CPU list", n)
		}
	}
	if len(t.CPUs) == 0 {
		return nil, fmt.Errorf("lay out workers: %w", ErrNoCPUs)
	}
	order, thread, err := t.spread()
	if err != nil {
		return nil, err
	}
	byID := make(map[int]CPU, len(t.CPUs))
	for _, c := range t.CPUs {
		byID[c.ID] = c
	}
	if len(explicit) > 0 {
		for _, id := range explicit {
			if _, ok := byID[id]; !ok {
				return nil, fmt.Errorf("lay out workers: cpu %d: %w (allowed: %s)", id, ErrNotAllowed, formatList(t.ids()))
			}
		}
		order = explicit
	}
	out := make([]Placement, n)
	for i := range out {
		c := byID[order[i%len(order)]]
		out[i] = Placement{Worker: i, CPU: c.ID, Package: c.Package, Core: c.Core, Thread: thread[c.ID]}
	}
	return out, nil
}

// ids returns the sorted CPU numbers in t.
func (t Topology) ids() []int {
	ids := make([]int, 0, len(t.CPUs))
	for _, c := range t.CPUs {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// spread returns t's CPU numbers in placement order (rank 0 threads of every
// core with packages interleaved, then rank 1, ...), and each CPU's rank (its
// index among its core's siblings by CPU number).
func (t Topology) spread() (order []int, thread map[int]int, err error) {
	type coreKey struct{ pkg, core int }
	cores := map[coreKey][]int{}
	seen := map[int]bool{}
	for _, c := range t.CPUs {
		if seen[c.ID] {
			return nil, nil, fmt.Errorf("lay out workers: topology lists cpu %d twice", c.ID)
		}
		seen[c.ID] = true
		k := coreKey{c.Package, c.Core}
		cores[k] = append(cores[k], c.ID)
	}
	// Per package, its cores in (core id) order; each core's threads by CPU number.
	pkgs := map[int][]coreKey{}
	thread = make(map[int]int, len(t.CPUs))
	maxThreads := 0
	for k, ids := range cores {
		slices.Sort(ids)
		for i, id := range ids {
			thread[id] = i
		}
		maxThreads = max(maxThreads, len(ids))
		pkgs[k.pkg] = append(pkgs[k.pkg], k)
	}
	pkgIDs := make([]int, 0, len(pkgs))
	maxCores := 0
	for p, ks := range pkgs {
		slices.SortFunc(ks, func(a, b coreKey) int {
			// Order cores by their lowest CPU number: core ids are sparse and
			// platform defined, CPU numbers are what users read in top(1).
			return cmp.Compare(cores[a][0], cores[b][0])
		})
		pkgIDs = append(pkgIDs, p)
		maxCores = max(maxCores, len(ks))
	}
	slices.Sort(pkgIDs)
	order = make([]int, 0, len(t.CPUs))
	for rank := range maxThreads {
		for i := range maxCores {
			for _, p := range pkgIDs {
				if i < len(pkgs[p]) {
					if ids := cores[pkgs[p][i]]; rank < len(ids) {
						order = append(order, ids[rank])
					}
				}
			}
		}
	}
	return order, thread, nil
}

// readTopology reads the package and core of each allowed CPU from sysfs,
// where sysfs is the file system mounted at /sys. A CPU whose topology files
// are missing (some containers hide them) counts as its own core on package
// 0, so layout degrades to plain CPU order instead of failing.
func readTopology(sysfs fs.FS, allowed []int) Topology {
	t := Topology{CPUs: make([]CPU, 0, len(allowed))}
	for _, id := range allowed {
		dir := "devices/system/cpu/cpu" + strconv.Itoa(id) + "/topology/"
		c := CPU{ID: id, Package: 0, Core: id}
		if v, ok := readInt(sysfs, dir+"physical_package_id"); ok {
			c.Package = v
		}
		if v, ok := readInt(sysfs, dir+"core_id"); ok {
			c.Core = v
		} else if b, err := fs.ReadFile(sysfs, dir+"thread_siblings_list"); err == nil {
			// No core_id: the kernel's own SMT grouping still names the core,
			// by its lowest sibling.
			if sib, err := parseList(string(b)); err == nil && len(sib) > 0 {
				c.Core = sib[0]
			}
		}
		t.CPUs = append(t.CPUs, c)
	}
	return t
}

// topologyCache is a topologyReader's memory: each CPU's package and core,
// read from sysfs once. They do not change while the machine runs, and a
// sysfs read costs about 30 µs on a VM: Layout read two files per allowed
// CPU at every pool.New (117 µs for 2 CPUs; a millisecond for 16).
type topologyCache struct {
	mu   sync.Mutex
	cpus map[int]CPU
}

// read returns the topology of the allowed CPUs, reading from sysfs only
// those it has not seen.
func (tc *topologyCache) read(sysfs fs.FS, allowed []int) Topology {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var unseen []int
	for _, id := range allowed {
		if _, ok := tc.cpus[id]; !ok {
			unseen = append(unseen, id)
		}
	}
	if len(unseen) > 0 {
		if tc.cpus == nil {
			tc.cpus = make(map[int]CPU)
		}
		for _, c := range readTopology(sysfs, unseen).CPUs {
			tc.cpus[c.ID] = c
		}
	}
	t := Topology{CPUs: make([]CPU, 0, len(allowed))}
	for _, id := range allowed {
		t.CPUs = append(t.CPUs, tc.cpus[id])
	}
	return t
}

// readInt reads a file holding one decimal integer.
func readInt(fsys fs.FS, name string) (int, bool) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return v, err == nil
}
