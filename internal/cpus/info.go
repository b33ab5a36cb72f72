package cpus

import (
	"runtime"

	"github.com/klauspost/cpuid/v2"
)

// DefaultWorkers returns the default number of worker processes:
// runtime.GOMAXPROCS(0).
//
// Since Go 1.25 the runtime's default GOMAXPROCS is exactly the count we
// want: the CPUs in the affinity mask, capped by the cgroup CPU quota rounded
// up (with a floor of 2 when a quota is set), and kept current by the runtime
// as either changes. It also honours a GOMAXPROCS environment variable or a
// runtime.GOMAXPROCS call, so a user who limits the parent's parallelism
// limits the pool the same way. [Allowed] and [Quota] give the two inputs
// separately.
func DefaultWorkers() int {
	return max(1, runtime.GOMAXPROCS(0))
}

// Info describes the machine for a human reader (the demo's sysinfo).
type Info struct {
	// From CPUID via github.com/klauspost/cpuid/v2. These describe one package
	// as the (possibly virtual) CPU reports it, ignore the affinity mask,
	// quotas, offline CPUs and other sockets, and are 0 or "" when unknown.
	// They are hints for display only; never size anything by them.
	Brand          string
	Vendor         string
	PhysicalCores  int
	LogicalCores   int
	ThreadsPerCore int
	CacheLine      int // bytes

	// From the kernel: what this process may actually use.
	Allowed        int     // CPUs in the affinity mask; 0 if unknown
	AllowedCores   int     // distinct physical cores among them (sysfs); 0 if unknown
	Quota          float64 // cgroup CPU quota in CPUs; 0 for none
	DefaultWorkers int     // see DefaultWorkers
}

// ReadInfo gathers Info. The kernel fields are left zero where they cannot
// be read (the first such error is returned with the rest filled in).
func ReadInfo() (Info, error) {
	in := Info{
		Brand:          cpuid.CPU.BrandName,
		Vendor:         cpuid.CPU.VendorString,
		PhysicalCores:  cpuid.CPU.PhysicalCores,
		LogicalCores:   cpuid.CPU.LogicalCores,
		ThreadsPerCore: cpuid.CPU.ThreadsPerCore,
		CacheLine:      cpuid.CPU.CacheLine,
		DefaultWorkers: DefaultWorkers(),
	}
	t, err := ReadTopology()
	if err != nil {
		return in, err
	}
	in.Allowed = len(t.CPUs)
	in.AllowedCores = t.cores()
	in.Quota, err = Quota()
	return in, err
}

// cores counts the distinct (package, core) pairs in t.
func (t Topology) cores() int {
	type key struct{ pkg, core int }
	seen := map[key]bool{}
	for _, c := range t.CPUs {
		seen[key{c.Package, c.Core}] = true
	}
	return len(seen)
}
