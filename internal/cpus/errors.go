package cpus

import "errors"

// ErrNotAllowed is returned when a CPU is not in this process's affinity
// mask (or is not in the Topology being planned over). Pick CPUs from
// [Allowed]; pinning outside the mask would either fail with EINVAL under a
// cpuset cgroup or silently widen a user's taskset.
var ErrNotAllowed = errors.New("cpu not in this process's affinity mask")

// ErrNoCPUs is returned when a Topology lists no CPUs to lay workers out on.
var ErrNoCPUs = errors.New("no CPUs to lay workers out on")
