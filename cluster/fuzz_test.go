package cluster

import (
	"encoding/binary"
	"regexp"
	"strings"
	"testing"

	"github.com/mproc/mproc/internal/bridge"
)

// FuzzResultMessage feeds hostile bytes to a slot's link as a node's
// result: never a panic, and whatever reaches the pool is a well-formed
// result message of the chunk, in order, within its items.
//
//	go test -run '^$' -fuzz FuzzResultMessage -fuzztime 30s ./cluster
func FuzzResultMessage(f *testing.F) {
	ok := bridge.JoinResult(7, 0, [][]byte{{0, 1, 0, 0, 0, 'x'}}, false, false, 0)
	f.Add(ok)
	f.Add(bridge.FailedResult(7, 1, 2, "node", 9, false, "lost"))
	f.Add(append([]byte{kindBegin, 1, 0, 0, 0}, binary.LittleEndian.AppendUint64(nil, 7)...))
	f.Add([]byte{2, 0, 0xff, 0xff, 0, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		l := newSlotLink(&client{seqs: make(map[uint64]seqRef)}, 0)
		l.jobs[7] = &jobState{hi: 4, next: 0, held: make(map[int][]byte)}
		l.feed(data)
		l.feed(data) // a duplicate changes nothing
		next := 0
		for _, m := range l.queue {
			job, first, _, items, err := bridge.SplitResult(m)
			if err != nil || job != 7 || first != next || first+len(items) > 4 {
				t.Fatalf("queued %x: job %d first %d (want %d), %d items, %v", m, job, first, next, len(items), err)
			}
			next += len(items)
		}
	})
}

// FuzzTaskMessage checks that a node's parsing of a hostile task
// message never panics and never accepts one it cannot split.
//
//	go test -run '^$' -fuzz FuzzTaskMessage -fuzztime 30s ./cluster
func FuzzTaskMessage(f *testing.F) {
	valid := []byte{1, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'f', 1, 0, 0, 0, 'a'}
	f.Add(valid)
	f.Add(valid[:20])
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, count, err := bridge.ParseTask(data)
		prefix, items, serr := bridge.SplitTask(data)
		if serr == nil {
			if err != nil || len(items) != count {
				t.Fatalf("SplitTask accepted %x that ParseTask refused (%v) or miscounted (%d, %d)", data, err, len(items), count)
			}
			if again := bridge.JoinTask(prefix, 0, items); len(again) != len(data) {
				t.Fatalf("JoinTask of a split message: %d bytes, want %d", len(again), len(data))
			}
		}
	})
}

// TestIsAck: a client acks only an ack subject of its own namespace's
// consumer, whatever subject a node's result message names.
func TestIsAck(t *testing.T) {
	n := namesFor("ns")
	for subj, want := range map[string]bool{
		"$JS.ACK.MPROC_ns.nodes.1.2.2.1796237455297149300.0":             true,
		"$JS.ACK._.ACCHASH.MPROC_ns.nodes.1.2.2.1796237455297149300.0":   true,
		"$JS.ACK._.ACCHASH.MPROC_ns.nodes.1.2.2.1796237455297149300.0.x": true,
		"$JS.ACK.MPROC_other.nodes.1.2.2.1796237455297149300.0":          false, // another namespace
		"$JS.ACK.MPROC_ns.others.1.2.2.1796237455297149300.0":            false, // another consumer
		"$JS.ACK.MPROC_ns.nodes.1.2.2.0":                                 false, // too few tokens
		"$JS.ACK.MPROC_ns.nodes.1.2.2.3.4.5":                             false, // 10 tokens
		"$JS.API.STREAM.DELETE.MPROC_ns.nodes.1.2.3":                     false,
		"ns.task.client.0":                   false,
		"$JS.ACK.MPROC_ns.nodes.1..2.3.0":    false, // empty token
		"$JS.ACK.MPROC_ns.nodes.>":           false,
		"$JS.ACK.MPROC_ns.nodes.1.2.2.3 4.0": false,
		"":                                   false,
	} {
		if got := n.isAck(subj); got != want {
			t.Errorf("isAck(%q) = %v, want %v", subj, got, want)
		}
	}
}

// FuzzNameOK: the hand-written check of namespace and client names accepts
// exactly what `^[A-Za-z0-9_-]{1,64}$` does (it replaced that regexp).
func FuzzNameOK(f *testing.F) {
	for _, s := range []string{"", "mproc", "a-b_C9", strings.Repeat("x", 64), strings.Repeat("x", 65), "a.b", "a b", "ü", "*", ">"} {
		f.Add(s)
	}
	want := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got := nameOK(s); got != want.MatchString(s) {
			t.Fatalf("nameOK(%q) = %v, the regexp says %v", s, got, !got)
		}
	})
}
