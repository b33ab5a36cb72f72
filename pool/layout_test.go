package pool

import (
	"testing"
	"unsafe"
)

// TestControlLayout keeps each writer's words on its own cache line and the
// page within the space the link reserves for it.
func TestControlLayout(t *testing.T) {
	var c linkControl
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"magic offset", unsafe.Offsetof(c.magic), 0},
		{"takenJob offset (worker's line)", unsafe.Offsetof(c.takenJob), 64},
		{"abortJob offset (parent's line)", unsafe.Offsetof(c.abortJob), 128},
		{"parked offset (shared line)", unsafe.Offsetof(c.parked), 192},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if s := unsafe.Sizeof(c); s > 256 || s > pageSize {
		t.Errorf("sizeof(linkControl) = %d, want at most 256", s)
	}
}

// TestBoardLayout: the parent's words, the workers' claim counter and the
// close flag each have their own cache line, within the header page.
func TestBoardLayout(t *testing.T) {
	var b boardHeader
	if o := unsafe.Offsetof(b.next); o != 64 {
		t.Errorf("next offset = %d, want 64", o)
	}
	if o := unsafe.Offsetof(b.working); o/64 != 1 {
		t.Errorf("working offset = %d, want it on line 1 with next (the workers' line)", o)
	}
	if o := unsafe.Offsetof(b.closed); o != 128 {
		t.Errorf("closed offset = %d, want 128", o)
	}
	if s := unsafe.Sizeof(b); s > pageSize {
		t.Errorf("sizeof(boardHeader) = %d, over the %d-byte header page", s, pageSize)
	}
}
