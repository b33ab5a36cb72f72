package ipc

import "unsafe"

// uintptrOf gives layout tests the address of a field.
func uintptrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }
