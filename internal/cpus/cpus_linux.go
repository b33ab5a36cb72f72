package cpus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxMaskBits bounds how far getaffinity grows its buffer. Linux's NR_CPUS
// is at most 8192 today; 1<<22 leaves ample room while keeping a broken
// kernel answer from looping forever.
const maxMaskBits = 1 << 22

// getaffinity returns the calling thread's affinity mask (sched_getaffinity(2)
// with pid 0). unix.CPUSet stops at 1024 CPUs and the kernel answers EINVAL
// when the buffer is smaller than its cpumask, so grow a CPUSetDynamic until
// the kernel accepts it.
func getaffinity() (unix.CPUSetDynamic, error) {
	for bits := 1024; ; bits *= 2 {
		set := unix.NewCPUSet(bits)
		err := unix.SchedGetaffinityDynamic(0, set)
		if err == nil {
			return set, nil
		}
		if err != unix.EINVAL || bits >= maxMaskBits {
			return nil, os.NewSyscallError("sched_getaffinity", err)
		}
	}
}

// members lists the CPU numbers in set, ascending.
func members(set unix.CPUSetDynamic) []int {
	out := make([]int, 0, set.Count())
	for c := range len(set) * 64 {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out
}

// Allowed returns the Linux CPU numbers this process may run on, ascending:
// the sched_getaffinity(2) mask of the calling thread. In a Go program every
// thread carries the process's mask unless code set one thread's mask itself
// (StartPinned restores the thread it borrows before releasing it), so this
// is the process's mask. It reflects taskset(1), cpuset cgroups and the
// online CPUs; it ignores CPU quotas (see Quota). Safe for concurrent use.
func Allowed() ([]int, error) {
	set, err := getaffinity()
	if err != nil {
		return nil, fmt.Errorf("read affinity mask: %w", err)
	}
	return members(set), nil
}

// Quota returns this process's cgroup CPU bandwidth limit in CPUs (cgroup v2
// cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us, the smallest along
// the cgroup's ancestors), e.g. 1.5 for "150000 100000", or 0 when no limit
// is set or no cgroup file system is visible. It returns an error only for
// files that exist but cannot be read or parsed.
func Quota() (float64, error) {
	return quotaFS(os.DirFS("/"))
}

// ReadTopology returns the allowed CPUs with their package and core from
// sysfs (/sys/devices/system/cpu/cpuN/topology). Where sysfs hides a CPU's
// topology, that CPU counts as its own core on package 0.
func ReadTopology() (Topology, error) {
	ids, err := Allowed()
	if err != nil {
		return Topology{}, err
	}
	return sysTopology.read(os.DirFS("/sys"), ids), nil
}

// sysTopology remembers what ReadTopology read from /sys.
var sysTopology topologyCache

// Layout plans n workers on this process's allowed CPUs; see
// [Topology.Layout] for the order and for explicit lists.
func Layout(n int, explicit []int) ([]Placement, error) {
	t, err := ReadTopology()
	if err != nil {
		return nil, err
	}
	return t.Layout(n, explicit)
}

// StartPinned starts cmd (as cmd.Start does) with every thread of the child
// restricted to cpu, from its first instruction on. cpu < 0 means a plain,
// unpinned cmd.Start. cpu must be in Allowed, or StartPinned returns an error
// wrapping ErrNotAllowed and starts nothing. Safe for concurrent use.
//
// sched_setaffinity(2) with pid 0 pins only the calling thread, and a Go
// program has several threads before main runs, so pinning from inside the
// child misses most of them. But a new thread, and a process created by
// clone(2), inherits the mask of the thread that creates it, and the mask
// survives execve(2). So StartPinned locks a goroutine to its OS thread,
// saves that thread's mask, sets it to {cpu}, calls cmd.Start (os/exec forks
// from the calling thread), and restores the saved mask before unlocking.
// The child's runtime then starts with one CPU: runtime.NumCPU() == 1,
// GOMAXPROCS == 1, and every thread it ever creates is on cpu. The parent is
// not disturbed: no other goroutine runs on the thread while it is pinned,
// and the Go runtime never clones new threads from a locked thread (it hands
// that to its template thread), so no runtime thread inherits {cpu}.
//
// Pdeathsig: the kernel sends SysProcAttr.Pdeathsig when the thread that
// created the child exits, not when the parent process does (go.dev/issue/27505).
// Here that thread is the one StartPinned borrowed. Because its mask is
// restored and it is unlocked normally, it returns to the runtime's thread
// pool and lives as long as the process, just as after a plain cmd.Start.
// Had the goroutine exited while locked, the runtime would have killed the
// thread and with it (through Pdeathsig) the child. If the mask cannot be
// restored, the thread must neither rejoin the pool (it would run other
// goroutines on one CPU) nor exit (it would kill the child), so the borrowing
// goroutine stays locked and parked for the rest of the process's life, and
// StartPinned returns the child started together with that error.
func StartPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	// A fresh goroutine, so that neither the caller's own LockOSThread state
	// nor its thread's mask is touched, and so that the rare restore failure
	// can park this goroutine instead of the caller's.
	done := make(chan error, 1)
	go startPinned(cmd, cpu, done)
	return <-done
}

func startPinned(cmd *exec.Cmd, cpu int, done chan<- error) {
	runtime.LockOSThread()
	saved, err := getaffinity()
	if err != nil {
		runtime.UnlockOSThread()
		done <- fmt.Errorf("pin child to cpu %d: %w", cpu, err)
		return
	}
	if !saved.IsSet(cpu) {
		runtime.UnlockOSThread()
		done <- fmt.Errorf("pin child to cpu %d: %w (allowed: %s)", cpu, ErrNotAllowed, formatList(members(saved)))
		return
	}
	pin := unix.NewCPUSet(cpu + 1)
	pin.Set(cpu)
	if err := unix.SchedSetaffinityDynamic(0, pin); err != nil {
		// The thread's mask is unchanged on failure.
		runtime.UnlockOSThread()
		done <- fmt.Errorf("pin child to cpu %d: %w", cpu, os.NewSyscallError("sched_setaffinity", err))
		return
	}
	startErr := cmd.Start()
	// Restore BEFORE unlocking: once unlocked, the runtime may schedule any
	// goroutine on this thread.
	if err := unix.SchedSetaffinityDynamic(0, saved); err != nil {
		// The saved mask can only be refused if a cpuset shrank meanwhile;
		// all-ones asks for "everything the cpuset allows".
		full := unix.NewCPUSet(len(saved) * 64)
		full.Fill()
		if err2 := unix.SchedSetaffinityDynamic(0, full); err2 != nil {
			done <- errors.Join(startErr, fmt.Errorf("restore affinity after pinning to cpu %d (a thread stays parked): %w",
				cpu, os.NewSyscallError("sched_setaffinity", err2)))
			select {} // Keep the thread locked and alive: see StartPinned.
		}
	}
	runtime.UnlockOSThread()
	done <- startErr
}

// ThreadMasks returns, for every thread (task) of process pid, the CPUs its
// affinity mask allows, from Cpus_allowed_list in /proc/<pid>/task/<tid>/status.
// Threads that exit while it reads are left out. Tests and the demo use it to
// show that every thread of a pinned child is on its CPU.
func ThreadMasks(pid int) (map[int][]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read thread masks of pid %d: %w", pid, err)
	}
	out := make(map[int][]int, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue // the thread exited
			}
			return nil, fmt.Errorf("read thread masks of pid %d: %w", pid, err)
		}
		list, ok := statusField(b, "Cpus_allowed_list:")
		if !ok {
			return nil, fmt.Errorf("read thread masks of pid %d: tid %d: no Cpus_allowed_list", pid, tid)
		}
		cpus, err := parseList(list)
		if err != nil {
			return nil, fmt.Errorf("read thread masks of pid %d: tid %d: %w", pid, tid, err)
		}
		out[tid] = cpus
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read thread masks of pid %d: %w", pid, os.ErrNotExist)
	}
	return out, nil
}

// statusField returns the value of a "Key:\tvalue" line of a proc status file.
func statusField(b []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte(key)); ok {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}
