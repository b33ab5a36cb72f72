package shm

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// TestHeaderLayout pins the on-disk layout: other processes, possibly built
// from another commit, read these offsets.
func TestHeaderLayout(t *testing.T) {
	typ := reflect.TypeFor[header]()
	if typ.Size() != HeaderSize {
		t.Fatalf("sizeof(header) = %d, want %d", typ.Size(), HeaderSize)
	}
	if n := binary.Size(header{}); n != HeaderSize {
		t.Fatalf("binary.Size(header) = %d, want %d", n, HeaderSize)
	}
	want := []struct {
		name   string
		offset uintptr
	}{
		{"Magic", 0}, {"Version", 8}, {"Flags", 12}, {"ID", 16}, {"Size", 24},
		{"ElemSize", 32}, {"ElemType", 40}, {"Checksum", checksumOffset},
	}
	for _, w := range want {
		f, ok := typ.FieldByName(w.name)
		if !ok {
			t.Errorf("header has no field %s", w.name)
			continue
		}
		if f.Offset != w.offset {
			t.Errorf("offsetof(header.%s) = %d, want %d", w.name, f.Offset, w.offset)
		}
	}
	if HeaderSize%64 != 0 {
		t.Errorf("HeaderSize = %d, want a multiple of 64 so payloads start on a cache line", HeaderSize)
	}
}
