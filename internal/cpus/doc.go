// Package cpus answers which CPUs this process may use and where mproc's
// worker processes should run on them.
//
// The inputs are the kernel's, never guesses: the sched_getaffinity(2) mask
// ([Allowed]), the cgroup CPU quota ([Quota]) and the sysfs topology
// ([ReadTopology]). [DefaultWorkers] is runtime.GOMAXPROCS(0), which since
// Go 1.25 combines the first two the same way. [Layout] spreads workers one
// per physical core before SMT siblings, and [StartPinned] starts a worker
// with all of its threads on its CPU:
//
//	plan, err := cpus.Layout(cpus.DefaultWorkers(), nil)
//	...
//	for _, p := range plan {
//		cmd := exec.Command("/proc/self/exe")
//		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
//		if err := cpus.StartPinned(cmd, p.CPU); err != nil { ... }
//	}
//
// [ThreadMasks] reads back every thread's mask of a process, to prove it.
// [ReadInfo] adds CPUID's brand and core counts for display.
//
// # Caveats
//
//   - Linux only. Elsewhere every function that needs the kernel returns an
//     error wrapping errors.ErrUnsupported; [Topology.Layout] and
//     [DefaultWorkers] work everywhere.
//   - CPU numbers are Linux's (as in taskset(1) and /proc), chosen only from
//     the affinity mask: under a cpuset cgroup other CPUs give EINVAL, and
//     under taskset(1) pinning to them would silently override the user.
//   - The mask and quota are read when called. A cgroup or taskset change
//     afterwards is not seen by a plan made before it; a pinned worker keeps
//     its CPU until it exits.
//   - CPUID's counts ([Info]) describe one package as the (often virtual)
//     CPU reports it, ignoring masks, quotas, offline CPUs and other sockets.
//     They are for display; nothing here is sized by them.
//   - Where sysfs hides the topology (some containers), each allowed CPU
//     counts as its own core, so SMT siblings may share work early.
//   - StartPinned borrows an OS thread for the fork. SysProcAttr.Pdeathsig
//     fires when that thread exits (go.dev/issue/27505); StartPinned returns
//     it to the runtime alive and with its mask restored, so the child lives
//     until the parent process exits, as with cmd.Start. A caller that sets
//     Pdeathsig must not start children from a goroutine that exits while
//     locked with runtime.LockOSThread, pinned or not.
//   - Oversubscription (more workers than CPUs) is allowed: Layout wraps
//     around, and workers then share CPUs, so any busy-waiting in them must
//     be bounded.
package cpus
