package shm_test

import (
	"errors"
	"fmt"

	"github.com/mproc/mproc/shm"
)

// A segment holds bytes that any process mapping it sees. Here a second
// view over the same memory stands in for the child's OpenFD.
func ExampleNew() {
	seg, err := shm.New("greeting", 64)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer seg.Close()
	copy(seg.Bytes(), "hello")

	same, err := shm.Lookup(seg.ID()) // how a value naming the segment by id finds it
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(seg.Len(), string(same.Bytes()[:5]))
	// Output: 64 hello
}

// An Array of plain structs, written once and frozen, then viewed through
// its segment as another process would after OpenFD.
func ExampleNewArray() {
	type sample struct{ X, Weight float64 }
	arr, err := shm.NewArray[sample](3)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arr.Close()
	copy(arr.Slice(), []sample{{1, 0.5}, {2, 0.25}, {4, 0.25}})
	if err := arr.Freeze(); err != nil {
		fmt.Println(err)
		return
	}

	view, err := shm.ArrayOf[sample](arr.Segment())
	if err != nil {
		fmt.Println(err)
		return
	}
	var mean float64
	for _, s := range view.Slice() {
		mean += s.X * s.Weight
	}
	fmt.Println(view.Len(), mean, arr.Segment().Frozen())

	_, err = shm.NewArray[string](1) // strings are pointers: refused
	fmt.Println(errors.Is(err, shm.ErrPointerType))
	// Output:
	// 3 2 true
	// true
}
