package pool

import (
	"context"
	"testing"

	"github.com/mproc/mproc/shm"
)

// span asks a worker to double In[Lo:Hi] into Out[Lo:Hi], in place: only
// the two segment ids and the bounds travel with the task.
type span struct {
	In, Out *shm.Array[float64]
	Lo, Hi  int
}

var double = Register("test.double", func(s span) (int, error) {
	in, out := s.In.Slice(), s.Out.Slice()
	for i := s.Lo; i < s.Hi; i++ {
		out[i] = 2 * in[i]
	}
	return s.Hi - s.Lo, nil
})

func TestSharedArraysZeroCopy(t *testing.T) {
	const n = 1 << 16
	in, err := shm.NewArray[float64](n)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for i := range in.Slice() {
		in.Slice()[i] = float64(i)
	}
	if err := in.Freeze(); err != nil {
		t.Fatal(err)
	}
	out, err := shm.NewArray[float64](n)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	var spans []span
	for lo := 0; lo < n; lo += 4096 {
		spans = append(spans, span{In: in, Out: out, Lo: lo, Hi: lo + 4096})
	}
	done, err := Map(context.Background(), p, double, spans)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, d := range done {
		total += d
	}
	if total != n {
		t.Fatalf("workers covered %d elements, want %d", total, n)
	}
	for i, v := range out.Slice() {
		if v != 2*float64(i) {
			t.Fatalf("out[%d] = %v, want %v", i, v, 2*float64(i))
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
