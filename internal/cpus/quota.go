package cpus

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// quotaFS returns the CPU bandwidth limit of this process's cgroup, in CPUs,
// or 0 when there is none. root is the file system at "/" (os.DirFS("/") in
// production, a fstest.MapFS in tests).
//
// It follows what the Go runtime does (runtime/cgroup_linux.go): find the
// process's cgroup in /proc/self/cgroup, find where that hierarchy is mounted
// in /proc/self/mountinfo, then read the limit of that cgroup and of every
// ancestor up to the mount point, keeping the smallest. A v1 "cpu" controller
// wins over the v2 unified hierarchy on hybrid systems, as in the runtime. Any
// file that does not exist means "no limit here", never an error.
func quotaFS(root fs.FS) (float64, error) {
	cg, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read cgroup quota: %w", err)
	}
	v1Path, v2Path, hasV1, hasV2 := parseProcCgroup(string(cg))
	mi, err := fs.ReadFile(root, "proc/self/mountinfo")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read cgroup quota: %w", err)
	}
	mounts := parseMountinfo(string(mi))
	switch {
	case hasV1:
		dirs := cgroupDirs(mounts, v1Path, func(m mount) bool { return m.fstype == "cgroup" && hasOpt(m.superOpts, "cpu") },
			"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu")
		return minQuota(root, dirs, readV1)
	case hasV2:
		dirs := cgroupDirs(mounts, v2Path, func(m mount) bool { return m.fstype == "cgroup2" },
			"/sys/fs/cgroup")
		return minQuota(root, dirs, readV2)
	}
	return 0, nil
}

// parseProcCgroup reads /proc/self/cgroup lines "id:controllers:path".
func parseProcCgroup(s string) (v1Path, v2Path string, hasV1, hasV2 bool) {
	for line := range strings.Lines(s) {
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && ctrls == "" {
			v2Path, hasV2 = p, true
		} else if hasOpt(ctrls, "cpu") {
			v1Path, hasV1 = p, true
		}
	}
	return
}

type mount struct {
	root, point, fstype, superOpts string
}

// parseMountinfo reads the fields of /proc/self/mountinfo we need
// (proc(5)): root (4), mount point (5), and after the "-" separator the
// file system type and super options.
func parseMountinfo(s string) []mount {
	var out []mount
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(f) {
			continue
		}
		out = append(out, mount{root: unescape(f[3]), point: unescape(f[4]), fstype: f[sep+1], superOpts: f[sep+3]})
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOpt(list, opt string) bool {
	for o := range strings.SplitSeq(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// cgroupDirs returns the directories, leaf first, whose limits apply to the
// cgroup at cgPath: the cgroup's own directory under the hierarchy's mount
// point and each ancestor up to that mount point. Without a usable mountinfo
// entry it falls back to the usual mount points.
func cgroupDirs(mounts []mount, cgPath string, match func(mount) bool, fallback ...string) []string {
	var base, rel string
	found := false
	for _, m := range mounts {
		if !match(m) {
			continue
		}
		// The mount shows the hierarchy from m.root down; the process's
		// cgroup path is relative to the hierarchy's root. Under a cgroup
		// namespace both are "/".
		r, ok := strings.CutPrefix(cgPath, m.root)
		if !ok || (r != "" && m.root != "/" && !strings.HasPrefix(r, "/")) {
			continue
		}
		base, rel, found = m.point, r, true
		break
	}
	if !found {
		// No mountinfo (or the cgroup is outside every mount): try the
		// conventional mount points with the path as /proc/self/cgroup says.
		var dirs []string
		for _, fb := range fallback {
			dirs = append(dirs, ancestors(fb, cgPath)...)
		}
		return dirs
	}
	return ancestors(base, rel)
}

// ancestors returns base/rel, base/dir(rel), ..., base.
func ancestors(base, rel string) []string {
	rel = path.Clean("/" + rel)
	var dirs []string
	for {
		dirs = append(dirs, path.Join(base, rel))
		if rel == "/" {
			return dirs
		}
		rel = path.Dir(rel)
	}
}

// minQuota reads every directory's limit and returns the smallest positive one.
func minQuota(root fs.FS, dirs []string, read func(fs.FS, string) (float64, error)) (float64, error) {
	best := 0.0
	for _, d := range dirs {
		q, err := read(root, strings.TrimPrefix(d, "/"))
		if err != nil {
			return 0, fmt.Errorf("read cgroup quota in %s: %w", d, err)
		}
		if q > 0 && (best == 0 || q < best) {
			best = q
		}
	}
	return best, nil
}

// readV2 reads cgroup v2 cpu.max: "max 100000" (no limit) or "$QUOTA $PERIOD".
func readV2(root fs.FS, dir string) (float64, error) {
	b, err := fs.ReadFile(root, path.Join(dir, "cpu.max"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f) > 2 {
		return 0, fmt.Errorf("cpu.max %q: want \"$MAX $PERIOD\"", b)
	}
	if f[0] == "max" {
		return 0, nil
	}
	period := "100000" // the kernel's default when only the quota is given
	if len(f) == 2 {
		period = f[1]
	}
	return ratio(f[0], period)
}

// readV1 reads cgroup v1 cpu.cfs_quota_us (-1 for no limit) and cpu.cfs_period_us.
func readV1(root fs.FS, dir string) (float64, error) {
	q, err := fs.ReadFile(root, path.Join(dir, "cpu.cfs_quota_us"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	qs := strings.TrimSpace(string(q))
	if strings.HasPrefix(qs, "-") {
		return 0, nil
	}
	p, err := fs.ReadFile(root, path.Join(dir, "cpu.cfs_period_us"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return ratio(qs, strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, error) {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, fmt.Errorf("bad cpu quota %q / period %q", quota, period)
	}
	return float64(q) / float64(p), nil
}
