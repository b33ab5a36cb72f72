//go:build linux

package ipc

import (
	"bytes"
	"os"
	"strconv"
)

// procStart reads /proc/<pid>/stat and returns the process's start time (field
// 22, in clock ticks since boot). ok is false when the process does not exist
// or has exited (zombie "Z" or dead "X"): unlike kill(pid, 0), which answers
// for zombies too. Pairing pid with start time makes a recycled pid read as
// a different process.
func procStart(pid int) (start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may contain spaces and parentheses: split after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, false
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	return start, err == nil
}
