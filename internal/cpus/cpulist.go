package cpus

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// parseList parses the kernel's CPU list format ("0-3,8,10-11"), as used by
// sysfs thread_siblings_list, cpuset files and Cpus_allowed_list in
// /proc/<pid>/status. The result is sorted and free of duplicates.
func parseList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("parse cpu list %q: bad cpu %q", s, lo)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a {
				return nil, fmt.Errorf("parse cpu list %q: bad range %q", s, part)
			}
		}
		// A hostile or corrupt list must not make us allocate without bound;
		// the kernel's NR_CPUS tops out at 8192 today.
		if b-a > 1<<16 {
			return nil, fmt.Errorf("parse cpu list %q: range %q too large", s, part)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// formatList formats sorted CPU numbers in the kernel's list format, so error
// messages name sets the way taskset(1) and /proc do.
func formatList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}
