package shm

import (
	"errors"
	"reflect"
	"testing"
)

type point struct {
	X, Y float64
	Tag  [4]int32
}

type withString struct {
	N    int
	Name string
}

type nested struct {
	P    [2]point
	Ptrs [1]struct{ P *int }
}

func TestElemInfo(t *testing.T) {
	tests := []struct {
		name    string
		info    func() (int, uint64, error)
		size    int
		wantErr error
	}{
		{name: "float64", info: elemInfo[float64], size: 8},
		{name: "bool", info: elemInfo[bool], size: 1},
		{name: "complex128", info: elemInfo[complex128], size: 16},
		{name: "plain struct", info: elemInfo[point], size: 32},
		{name: "array of structs", info: elemInfo[[3]point], size: 96},
		{name: "pointer", info: elemInfo[*int], wantErr: ErrPointerType},
		{name: "string", info: elemInfo[string], wantErr: ErrPointerType},
		{name: "slice", info: elemInfo[[]byte], wantErr: ErrPointerType},
		{name: "map", info: elemInfo[map[int]int], wantErr: ErrPointerType},
		{name: "interface", info: elemInfo[any], wantErr: ErrPointerType},
		{name: "uintptr", info: elemInfo[uintptr], wantErr: ErrPointerType},
		{name: "struct with a string", info: elemInfo[withString], wantErr: ErrPointerType},
		{name: "pointer deep in arrays and structs", info: elemInfo[nested], wantErr: ErrPointerType},
		{name: "zero size", info: elemInfo[struct{}], wantErr: ErrPointerType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, fp, err := tt.info()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("elemInfo() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (size != tt.size || fp == 0) {
				t.Fatalf("elemInfo() = %d, %#x, want size %d and a fingerprint", size, fp, tt.size)
			}
		})
	}
}

func TestFingerprintsDiffer(t *testing.T) {
	// Same size, different types: each must get its own fingerprint.
	fps := map[uint64]string{}
	for name, info := range map[string]func() (int, uint64, error){
		"int64": elemInfo[int64], "uint64": elemInfo[uint64], "float64": elemInfo[float64],
		"[2]int32": elemInfo[[2]int32], "[8]byte": elemInfo[[8]byte],
		"struct{A,B int32}": elemInfo[struct{ A, B int32 }], "struct{B,A int32}": elemInfo[struct{ B, A int32 }],
	} {
		_, fp, err := info()
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := fps[fp]; ok {
			t.Errorf("%s and %s share fingerprint %#x", name, other, fp)
		}
		fps[fp] = name
	}
}

func TestArray(t *testing.T) {
	a, err := NewArray[point](10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	xs := a.Slice()
	if len(xs) != 10 || a.Len() != 10 || a.Segment().Len() != 10*32 {
		t.Fatalf("len(Slice()), Len(), Segment().Len() = %d, %d, %d, want 10, 10, 320", len(xs), a.Len(), a.Segment().Len())
	}
	xs[9] = point{X: 1, Y: 2, Tag: [4]int32{3}}

	same, err := ArrayOf[point](a.Segment())
	if err != nil {
		t.Fatal(err)
	}
	if got := same.Slice()[9]; !reflect.DeepEqual(got, xs[9]) {
		t.Fatalf("ArrayOf view [9] = %+v, want %+v", got, xs[9])
	}
	if _, err := ArrayOf[[4]float64](a.Segment()); !errors.Is(err, ErrElemType) {
		t.Fatalf("ArrayOf[[4]float64] (same size, other type) error = %v, want ErrElemType", err)
	}
	if _, err := ArrayOf[string](a.Segment()); !errors.Is(err, ErrPointerType) {
		t.Fatalf("ArrayOf[string] error = %v, want ErrPointerType", err)
	}
	plain := mustNew(t, "plain", 64)
	if _, err := ArrayOf[byte](plain); !errors.Is(err, ErrElemType) {
		t.Fatalf("ArrayOf(plain segment) error = %v, want ErrElemType", err)
	}
	if _, err := NewArray[*point](1); !errors.Is(err, ErrPointerType) {
		t.Fatalf("NewArray[*point] error = %v, want ErrPointerType", err)
	}
	if _, err := NewArray[int64](-1); err == nil {
		t.Fatal("NewArray(-1) error = nil")
	}
}

func TestArrayMarshal(t *testing.T) {
	a, err := NewArray[float64](4)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Slice()[3] = 2.5
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}

	var got Array[float64]
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary() = %v", err)
	}
	if got.Len() != 4 || got.Slice()[3] != 2.5 {
		t.Fatalf("unmarshaled array = %v, want [0 0 0 2.5]", got.Slice())
	}
	if err := got.Close(); err != nil || a.Segment().Bytes() == nil {
		t.Fatalf("Close of unmarshaled array = %v or closed the owner's segment", err)
	}

	tests := []struct {
		name string
		data []byte
		into func([]byte) error
		want error
	}{
		{name: "short encoding", data: b[:15], into: new(Array[float64]).UnmarshalBinary, want: errInvalidLen},
		{name: "other element type", data: b, into: new(Array[int64]).UnmarshalBinary, want: ErrElemType},
		{name: "wrong length", data: append(b[:8:8], 5, 0, 0, 0, 0, 0, 0, 0), into: new(Array[float64]).UnmarshalBinary, want: ErrElemType},
		{name: "unknown id", data: make([]byte, 16), into: new(Array[float64]).UnmarshalBinary, want: ErrUnknownSegment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.into(tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("UnmarshalBinary() error = %v, want %v", err, tt.want)
			}
		})
	}
}
