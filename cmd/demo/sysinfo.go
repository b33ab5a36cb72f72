package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/mproc/mproc/internal/cpus"
	"github.com/mproc/mproc/pool"
)

// sectionSysinfo is the seed's print_sysinfo, plus what this process may
// actually use and where workers would be pinned.
func sectionSysinfo(w io.Writer, cfg *config) error {
	fmt.Fprintln(w, "Go version :", runtime.Version())
	fmt.Fprintln(w, "compiler   :", runtime.Compiler)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "system     :", runtime.GOOS)
	if rel, err := kernelRelease(); err == nil {
		fmt.Fprintln(w, "release    :", rel)
	} else {
		fmt.Fprintln(w, "release    : unknown:", err)
	}
	fmt.Fprintln(w, "machine    :", runtime.GOARCH)
	info, err := cpus.ReadInfo()
	if err != nil {
		fmt.Fprintln(w, "CPU info   : incomplete:", err)
	}
	fmt.Fprintln(w, "processor  :", orUnknown(info.Brand))
	fmt.Fprintf(w, "cores      : %d physical, %d logical (CPUID, one package as reported)\n", info.PhysicalCores, info.LogicalCores)
	if allowed, err := cpus.Allowed(); err == nil {
		fmt.Fprintf(w, "may use    : %d CPUs %v (affinity mask)", len(allowed), allowed)
		if info.Quota > 0 {
			fmt.Fprintf(w, ", cgroup quota %.2f CPUs", info.Quota)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "may use    : unknown:", err)
	}
	fmt.Fprintln(w, "GOMAXPROCS :", runtime.GOMAXPROCS(0))

	// The layout of a real pool of the largest benchmarked size, and proof
	// from /proc that every thread of every worker is on its CPU.
	n := slices.Max(cfg.procs)
	p, err := pool.New(&pool.Config{Workers: n})
	if err != nil {
		fmt.Fprintf(w, "pinning    : no pool of %d workers: %v\n", n, err)
		return nil
	}
	defer p.Close()
	fmt.Fprintf(w, "pinning    : %d workers (one per physical core first, then SMT siblings, then wrapping)\n", n)
	stats := p.Stats()
	for i, pl := range p.Layout() {
		pinned := "unpinned"
		if i < len(stats) && stats[i].Pid > 0 {
			pinned = threadSummary(stats[i].Pid)
		}
		fmt.Fprintf(w, "  worker %d -> cpu %d (package %d, core %d, thread %d)  pid %d: %s\n",
			pl.Worker, pl.CPU, pl.Package, pl.Core, pl.Thread, stats[i].Pid, pinned)
	}
	return p.Close()
}

// threadSummary says on which CPUs the threads of pid may run, from
// /proc/pid/task/*/status.
func threadSummary(pid int) string {
	masks, err := cpus.ThreadMasks(pid)
	if err != nil {
		return "threads unknown: " + err.Error()
	}
	seen := map[string]int{}
	for _, m := range masks {
		seen[fmt.Sprint(m)]++
	}
	var parts []string
	for m, count := range seen {
		parts = append(parts, fmt.Sprintf("%d threads on cpus %s", count, m))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
