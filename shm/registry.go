package shm

import (
	"fmt"
	"sync"
	"weak"

	"github.com/mproc/mproc/internal/fdpass"
)

// The registry maps segment ids to the live segments of this process, so that
// a value naming a segment by id (a marshaled Array) can be resolved to a
// mapping. Entries for segments the user created or attached are weak: the
// registry never keeps a dropped Segment alive. Entries that Lookup fetched
// itself are strong: nobody else holds them, and fetching again on every
// lookup would cost a round trip to the parent and a new mapping.
var registry struct {
	mu      sync.Mutex
	entries map[uint64]regEntry
	fetchMu sync.Mutex // serialises fetches so one id is fetched once
}

type regEntry struct {
	weak   weak.Pointer[Segment]
	strong *Segment // set only for segments Lookup fetched
}

// register adds s unless a live segment with the same id is already there
// (the same segment attached twice in one process).
func register(s *Segment) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.entries == nil {
		registry.entries = make(map[uint64]regEntry)
	}
	if e, ok := registry.entries[s.hdr.ID]; ok && e.weak.Value() != nil {
		return
	}
	registry.entries[s.hdr.ID] = regEntry{weak: weak.Make(s)}
}

// unregister removes id if its entry is s, or is dead when s is nil.
func unregister(id uint64, s *Segment) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	e, ok := registry.entries[id]
	if !ok {
		return
	}
	if v := e.weak.Value(); v == s || v == nil {
		delete(registry.entries, id)
	}
}

func registered(id uint64) *Segment {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return registry.entries[id].weak.Value()
}

// Lookup returns the live segment with the given id: one this process
// created or attached and has not closed yet. Inside an mproc worker, a
// segment the worker does not have yet is fetched from the parent, attached
// and kept until the pool releases it between tasks, once the parent has
// closed it (internal/fdpass.Release); do not Close a segment you did not
// create or attach yourself. Outside a worker, or when the parent does not
// know the id, it returns an error wrapping ErrUnknownSegment. Safe for
// concurrent use.
func Lookup(id uint64) (*Segment, error) {
	if s := registered(id); s != nil {
		return s, nil
	}
	fetch := fdpass.Fetch
	if fetch == nil {
		return nil, fmt.Errorf("%w: %#x is not open in this process; create or attach it first", ErrUnknownSegment, id)
	}
	registry.fetchMu.Lock()
	defer registry.fetchMu.Unlock()
	if s := registered(id); s != nil { // fetched while we waited
		return s, nil
	}
	f, err := fetch(id)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch %#x from parent: %w", ErrUnknownSegment, id, err)
	}
	s, err := Attach(f)
	if err != nil {
		return nil, fmt.Errorf("attach fetched segment %#x: %w", id, err)
	}
	if s.ID() != id {
		got := s.ID()
		err := s.Close()
		return nil, fmt.Errorf("%w: asked the parent for %#x, got %#x (%v)", ErrUnknownSegment, id, got, err)
	}
	registry.mu.Lock()
	registry.entries[id] = regEntry{weak: weak.Make(s), strong: s}
	registry.mu.Unlock()
	return s, nil
}

func init() { fdpass.Release = releaseFetched }

// releaseFetched implements fdpass.Release: it drops and closes the segment
// Lookup fetched under id, if there is one, and leaves every other segment
// alone. It holds fetchMu throughout, so that a Lookup racing with it
// either finds the segment before it goes or fetches a fresh one after.
func releaseFetched(id uint64) error {
	registry.fetchMu.Lock()
	defer registry.fetchMu.Unlock()
	registry.mu.Lock()
	e, ok := registry.entries[id]
	if !ok || e.strong == nil {
		registry.mu.Unlock()
		return nil // not fetched (created, attached, or unknown): not ours to drop
	}
	delete(registry.entries, id)
	registry.mu.Unlock()
	if err := e.strong.Close(); err != nil {
		return fmt.Errorf("release fetched segment %#x: %w", id, err)
	}
	return nil
}
