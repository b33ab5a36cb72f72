package codec_test

import (
	"errors"
	"fmt"

	"github.com/mproc/mproc/internal/codec"
)

func Example() {
	// A plain-data struct travels as its raw bytes.
	type task struct {
		Index int64
		H     float64
	}
	tc := codec.For[task]()
	b, _ := tc.Append(nil, task{Index: 3, H: 1.1})
	var t task
	if err := tc.Decode(b, &t); err != nil {
		fmt.Println(err)
	}
	fmt.Println(tc.Raw(), len(b), t)

	// Anything else travels as CBOR.
	sc := codec.For[[]string]()
	b, _ = sc.Append(nil, []string{"Y3S9B", "8IAV3"})
	var s []string
	if err := sc.Decode(b, &s); err != nil {
		fmt.Println(err)
	}
	fmt.Println(sc.Raw(), s)

	// Hostile bytes give an error, never a panic.
	fmt.Println(tc.Decode(b, &t) != nil, sc.Decode([]byte{0xff, 0x00}, &s) != nil)
	// Output:
	// true 16 {3 1.1}
	// false [Y3S9B 8IAV3]
	// true true
}

func ExampleCodec_Decode_overBudget() {
	// Six bytes that claim an array of 16 Mi elements, each a 4 KiB struct:
	// 64 GiB if the decoder believed the count. It is refused before
	// anything is allocated.
	type block struct{ Data [4096]byte }
	forged := []byte{0x9a, 0x01, 0x00, 0x00, 0x00, 0xa0}
	var blocks []block
	err := codec.For[[]block]().Decode(forged, &blocks)
	fmt.Println(errors.Is(err, codec.ErrOverBudget), len(blocks))
	// Output:
	// true 0
}
