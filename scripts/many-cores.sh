#!/bin/sh
# many-cores.sh: the scaling check for a machine with more than 2 CPUs, run
# from prebuilt binaries so that the machine needs no Go toolchain.
#
# Build here (static, so any x86-64 Linux runs them):
#
#	mkdir -p .bin
#	CGO_ENABLED=0 go build -ldflags='-s -w' -o .bin/demo ./cmd/demo
#	for p in . ./pool ./ipc; do
#		CGO_ENABLED=0 go test -ldflags='-s -w' -c -o .bin/$(basename $(go list $p)).test $p
#	done
#
# then run `sh scripts/many-cores.sh` there (about a minute on 16 CPUs). It
# prints the machine, the pinning layout of 16 workers, what a wake-up costs
# there (ring round trips polling and sleeping), the pool's micro-benchmarks,
# BenchmarkKDE at n = 1e4 over 1..16 workers (each configuration run back to
# back), the demo's interleaved KDE table at n = 1e4 and 1e6, the pool's
# tests, and whether anything was left behind. Output goes to stdout and to
# $OUT/log (OUT defaults to /tmp/many-cores).
set -u
BIN=${BIN:-.bin}
OUT=${OUT:-/tmp/many-cores}
mkdir -p "$OUT"
procs=1,2,4,8,16

section() { printf '\n==== %s (%s)\n' "$*" "$(date +%T)"; }

{
	section machine
	uname -srm
	nproc
	grep -m1 'model name' /proc/cpuinfo
	grep Cpus_allowed_list /proc/self/status
	lscpu 2>/dev/null | grep -E '^(Thread|Core|Socket|NUMA node)' || true
	cat /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || true

	section "pinning layout (demo section 7)"
	"$BIN/demo" -section 7 -procs 16

	section "wake-up cost: ring round trips, polling and sleeping"
	"$BIN/ipc.test" -test.run '^$' -test.bench 'RoundTrip' -test.benchtime 0.5s -test.count 3

	section "pool micro-benchmarks"
	"$BIN/pool.test" -test.run '^$' -test.bench 'Apply|Map|New' -test.count 3

	section "BenchmarkKDE, n = 1e4, configurations back to back"
	MPROC_BENCH_WORKERS=$procs MPROC_BENCH_N=10000 "$BIN/mproc.test" -test.run '^$' \
		-test.bench 'KDE/mode=(serial|goroutines|pool)$' -test.benchtime 300x -test.count 3

	section "demo KDE table, n = 1e4 (rows interleaved)"
	"$BIN/demo" -section 6 -n 10000 -procs $procs -reps 15 -plot "$OUT/kde-1e4.png"

	section "demo KDE table, n = 1e6"
	"$BIN/demo" -section 6 -n 1000000 -procs $procs -reps 7 -plot "$OUT/kde-1e6.png"

	section "pool tests"
	timeout 150 "$BIN/pool.test" -test.count 1 -test.timeout 140s 2>&1 | tail -25

	section "left behind"
	ls /dev/shm | grep mproc || echo "no mproc shm files"
	ps -eo pid,ppid,stat,comm | awk '$3 ~ /Z/ || $4 ~ /demo|\.test/' | grep -v awk || echo "no stray processes"
} 2>&1 | tee "$OUT/log"
