package leakcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Grace is how long Check waits for children that are still exiting.
var Grace = 2 * time.Second

// SegmentPrefix is the name prefix mproc gives its memfd segments and
// /dev/shm files.
const SegmentPrefix = "mproc"

var shmAtStart = listShm()

// Check reports every leak it finds, joined into one error, or nil.
func Check() error {
	var errs []error
	deadline := time.Now().Add(Grace)
	for {
		kids := Children()
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("leaked child processes (pid state cmd): %s", strings.Join(kids, "; ")))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fds := openSegments(); len(fds) > 0 {
		errs = append(errs, fmt.Errorf("leaked segment descriptors: %s", strings.Join(fds, ", ")))
	}
	if maps := mappedSegments(); len(maps) > 0 {
		errs = append(errs, fmt.Errorf("leaked segment mappings: %s", strings.Join(maps, ", ")))
	}
	for name := range listShm() {
		if !shmAtStart[name] {
			errs = append(errs, fmt.Errorf("leaked shm file /dev/shm/%s", name))
		}
	}
	return errors.Join(errs...)
}

// Children lists this process's direct children as "pid state comm" strings.
// Zombies count: a child that exited but was never waited for is a leak.
func Children() []string {
	return ChildrenOf(os.Getpid())
}

// ChildrenOf lists the direct children of pid, as Children does.
func ChildrenOf(pid int) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The comm field may hold spaces and parentheses: split after the last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			comm := s[strings.IndexByte(s, '(')+1 : i]
			out = append(out, fmt.Sprintf("%s %s %s", e.Name(), fields[0], comm))
		}
	}
	return out
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

func openSegments() []string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, "/memfd:"+SegmentPrefix) {
			out = append(out, e.Name()+" -> "+target)
		}
	}
	return out
}

func mappedSegments() []string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.Index(line, "/memfd:"+SegmentPrefix); i >= 0 {
			out = append(out, line[i:])
		}
	}
	return out
}

func listShm() map[string]bool {
	entries, _ := os.ReadDir("/dev/shm")
	set := make(map[string]bool)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), SegmentPrefix+"-") {
			set[e.Name()] = true
		}
	}
	return set
}

// Run runs the tests of m, then Check, and returns the exit code for
// os.Exit: m's own, or 1 when something leaked (reported on stderr).
// TestMain calls it after dispatching any child mode:
//
//	os.Exit(leakcheck.Run(m))
func Run(m *testing.M) int {
	code := m.Run()
	if err := Check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}
