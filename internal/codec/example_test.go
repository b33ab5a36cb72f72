package codec_test

import (
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
