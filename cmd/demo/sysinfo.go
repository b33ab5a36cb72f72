package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/mproc/mproc/internal/cpus"
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

	// TODO(lead): show the layout of the pool actually used in section 6
	// (pool.(*Pool).Layout()) once package pool exists; until then this is
	// the plan for the largest worker count.
	n := slices.Max(cfg.procs)
	layout, err := cpus.Layout(n, nil)
	if err != nil {
		fmt.Fprintf(w, "pinning    : no layout for %d workers: %v\n", n, err)
		return nil
	}
	fmt.Fprintf(w, "pinning    : %d workers ->", n)
	for _, pl := range layout {
		fmt.Fprintf(w, " %d:cpu%d", pl.Worker, pl.CPU)
	}
	fmt.Fprintln(w)
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
