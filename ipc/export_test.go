package ipc

import "unsafe"

// uintptrOf gives layout tests the address of a field.
func uintptrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

// futexWakeCalls is how many FUTEX_WAKE system calls this process has made.
func futexWakeCalls() uint64 { return futexWakes.Load() }
