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
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if s := unsafe.Sizeof(c); s > 192 || s > pageSize {
		t.Errorf("sizeof(linkControl) = %d, want at most 192", s)
	}
}
