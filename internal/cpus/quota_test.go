package cpus

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

const (
	v1Cgroup = "4:memory:/kubepods/pod1\n3:cpu,cpuacct:/kubepods/pod1\n0::/\n"
	v1Mounts = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	v2Cgroup = "0::/user.slice/app.scope\n"
	v2Mounts = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestQuota(t *testing.T) {
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    float64
		wantErr string
	}{
		{name: "nothing visible", fs: fstest.MapFS{}, want: 0},
		{name: "v2 limit on the leaf", fs: fstest.MapFS{
			"proc/self/cgroup":                           file(v2Cgroup),
			"proc/self/mountinfo":                        file(v2Mounts),
			"sys/fs/cgroup/user.slice/app.scope/cpu.max": file("150000 100000\n"),
			"sys/fs/cgroup/user.slice/cpu.max":           file("max 100000\n"),
		}, want: 1.5},
		{name: "v2 tighter limit on an ancestor", fs: fstest.MapFS{
			"proc/self/cgroup":                           file(v2Cgroup),
			"proc/self/mountinfo":                        file(v2Mounts),
			"sys/fs/cgroup/user.slice/app.scope/cpu.max": file("400000 100000\n"),
			"sys/fs/cgroup/user.slice/cpu.max":           file("50000 100000\n"),
		}, want: 0.5},
		{name: "v2 max everywhere", fs: fstest.MapFS{
			"proc/self/cgroup":                           file(v2Cgroup),
			"proc/self/mountinfo":                        file(v2Mounts),
			"sys/fs/cgroup/user.slice/app.scope/cpu.max": file("max 100000\n"),
		}, want: 0},
		{name: "v2 container with its own cgroup namespace", fs: fstest.MapFS{
			"proc/self/cgroup":        file("0::/\n"),
			"proc/self/mountinfo":     file("600 500 0:30 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/cpu.max":   file("200000 100000\n"),
			"sys/fs/cgroup/other/cpu": file("ignored"),
		}, want: 2},
		{name: "v2 mount of a sub-tree", fs: fstest.MapFS{
			"proc/self/cgroup":            file("0::/docker/abc/inner\n"),
			"proc/self/mountinfo":         file("600 500 0:30 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/inner/cpu.max": file("300000 100000\n"),
			"sys/fs/cgroup/cpu.max":       file("100000 100000\n"),
		}, want: 1},
		{name: "v2 without mountinfo uses /sys/fs/cgroup", fs: fstest.MapFS{
			"proc/self/cgroup":                           file(v2Cgroup),
			"sys/fs/cgroup/user.slice/app.scope/cpu.max": file("25000 100000\n"),
		}, want: 0.25},
		{name: "v1 quota on a hybrid system wins over v2", fs: fstest.MapFS{
			"proc/self/cgroup":    file(v1Cgroup),
			"proc/self/mountinfo": file(v1Mounts),
			"sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us":  file("250000\n"),
			"sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us": file("100000\n"),
			"sys/fs/cgroup/unified/cpu.max":                             file("100000 100000\n"),
		}, want: 2.5},
		{name: "v1 unlimited", fs: fstest.MapFS{
			"proc/self/cgroup":    file(v1Cgroup),
			"proc/self/mountinfo": file(v1Mounts),
			"sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us":  file("-1\n"),
			"sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us": file("100000\n"),
		}, want: 0},
		{name: "v1 mount point with an escaped space", fs: fstest.MapFS{
			"proc/self/cgroup":         file("3:cpu:/\n"),
			"proc/self/mountinfo":      file(`32 31 0:29 / /cg\040cpu rw - cgroup cgroup rw,cpu` + "\n"),
			"cg cpu/cpu.cfs_quota_us":  file("50000"),
			"cg cpu/cpu.cfs_period_us": file("100000"),
		}, want: 0.5},
		{name: "malformed cpu.max", fs: fstest.MapFS{
			"proc/self/cgroup":                 file(v2Cgroup),
			"proc/self/mountinfo":              file(v2Mounts),
			"sys/fs/cgroup/user.slice/cpu.max": file("lots 100000\n"),
		}, wantErr: "bad cpu quota"},
		{name: "zero period", fs: fstest.MapFS{
			"proc/self/cgroup":      file(v2Cgroup),
			"proc/self/mountinfo":   file(v2Mounts),
			"sys/fs/cgroup/cpu.max": file("100000 0\n"),
		}, wantErr: "bad cpu quota"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := quotaFS(tc.fs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("quotaFS() = %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("quotaFS() = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// topologySysfs is a sysfs with cpu0 and cpu2 on core 0 of package 0,
// cpu3 on package 1 named by its SMT siblings only, and cpu5 hidden.
func topologySysfs() fstest.MapFS {
	return fstest.MapFS{
		"devices/system/cpu/cpu0/topology/physical_package_id":  file("0\n"),
		"devices/system/cpu/cpu0/topology/core_id":              file("0\n"),
		"devices/system/cpu/cpu0/topology/thread_siblings_list": file("0,2\n"),
		"devices/system/cpu/cpu2/topology/physical_package_id":  file("0\n"),
		"devices/system/cpu/cpu2/topology/core_id":              file("0\n"),
		// cpu3 has no core_id: its SMT siblings name the core.
		"devices/system/cpu/cpu3/topology/physical_package_id":  file("1\n"),
		"devices/system/cpu/cpu3/topology/thread_siblings_list": file("1,3\n"),
		// cpu5 has no topology at all.
	}
}

func TestReadTopology(t *testing.T) {
	got := readTopology(topologySysfs(), []int{0, 2, 3, 5})
	want := []CPU{{ID: 0, Package: 0, Core: 0}, {ID: 2, Package: 0, Core: 0}, {ID: 3, Package: 1, Core: 1}, {ID: 5, Package: 0, Core: 5}}
	if len(got.CPUs) != len(want) {
		t.Fatalf("readTopology = %v, want %v", got.CPUs, want)
	}
	for i := range want {
		if got.CPUs[i] != want[i] {
			t.Errorf("readTopology CPU %d = %+v, want %+v", i, got.CPUs[i], want[i])
		}
	}
	if n := got.cores(); n != 3 {
		t.Errorf("cores() = %d, want 3", n)
	}
}

// TestTopologyCache: a CPU's topology is read from sysfs once; a CPU not
// seen before is read when it first appears, and the order is the
// caller's.
func TestTopologyCache(t *testing.T) {
	sysfs := topologySysfs()
	var tc topologyCache
	first := tc.read(sysfs, []int{0})
	// sysfs changes under it: what was read stays, what is new is read.
	sysfs["devices/system/cpu/cpu0/topology/core_id"] = file("7\n")
	got := tc.read(sysfs, []int{3, 0})
	want := []CPU{{ID: 3, Package: 1, Core: 1}, {ID: 0, Package: 0, Core: 0}}
	if len(first.CPUs) != 1 || first.CPUs[0] != want[1] || !slices.Equal(got.CPUs, want) {
		t.Fatalf("read = %v then %v, want [%v] then %v", first.CPUs, got.CPUs, want[1], want)
	}
}
