package shm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func validHeader() header {
	return header{Magic: magic, Version: layoutVersion, ID: 0x1234, Size: 80, ElemSize: 8, ElemType: 42, Flags: flagArray}
}

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		name     string
		field    func(h *header) // applied before encoding: a consistent checksum
		raw      func(b []byte)  // applied after encoding: corruption
		fileSize int64
		want     error
	}{
		{name: "valid array header", fileSize: HeaderSize + 80},
		{name: "file larger than the payload is accepted", fileSize: HeaderSize + 4096},
		{name: "file shorter than the header", fileSize: HeaderSize - 1, want: ErrTruncated},
		{name: "payload larger than the file", fileSize: HeaderSize + 79, want: ErrTruncated},
		{name: "foreign magic", field: func(h *header) { h.Magic[0] = 'M' }, fileSize: HeaderSize + 80, want: ErrBadMagic},
		{name: "future version", field: func(h *header) { h.Version = layoutVersion + 1 }, fileSize: HeaderSize + 80, want: ErrVersion},
		{name: "flipped byte after encoding", raw: func(b []byte) { b[20] ^= 1 }, fileSize: HeaderSize + 80, want: ErrChecksum},
		{name: "reserved byte set after encoding", raw: func(b []byte) { b[50] = 7 }, fileSize: HeaderSize + 80, want: ErrChecksum},
		{name: "zero id", field: func(h *header) { h.ID = 0 }, fileSize: HeaderSize + 80, want: ErrBadHeader},
		{name: "unknown flag", field: func(h *header) { h.Flags |= 1 << 7 }, fileSize: HeaderSize + 80, want: ErrBadHeader},
		{name: "element size not dividing payload", field: func(h *header) { h.ElemSize = 3 }, fileSize: HeaderSize + 80, want: ErrBadHeader},
		{name: "zero element size on array", field: func(h *header) { h.ElemSize = 0 }, fileSize: HeaderSize + 80, want: ErrBadHeader},
		{name: "element fields on plain segment", field: func(h *header) { h.Flags = 0 }, fileSize: HeaderSize + 80, want: ErrBadHeader},
		{name: "huge size does not overflow", field: func(h *header) { h.Size = ^uint64(0) - 7; h.ElemSize = 8 }, fileSize: HeaderSize + 80, want: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := validHeader()
			b := make([]byte, HeaderSize+80)
			if tt.field != nil {
				tt.field(&h)
			}
			h.encode(b)
			if tt.raw != nil {
				tt.raw(b)
			}
			got, err := decodeHeader(b[:min(int64(len(b)), tt.fileSize)], tt.fileSize)
			if !errors.Is(err, tt.want) {
				t.Fatalf("decodeHeader() error = %v, want %v", err, tt.want)
			}
			if err == nil && got != h {
				t.Fatalf("decodeHeader() = %+v, want %+v", got, h)
			}
		})
	}
}

// TestChecksumCoversEveryField guards against a field left out of the
// checksum: flipping any bit before the checksum must be detected.
func TestChecksumCoversEveryField(t *testing.T) {
	h := validHeader()
	b := make([]byte, HeaderSize+80)
	h.encode(b)
	for i := 16; i < checksumOffset; i++ { // after magic and version, which fail earlier
		c := append([]byte(nil), b...)
		c[i] ^= 0x80
		if _, err := decodeHeader(c, int64(len(c))); !errors.Is(err, ErrChecksum) {
			t.Errorf("flip byte %d: decodeHeader() error = %v, want ErrChecksum", i, err)
		}
	}
	if got := binary.LittleEndian.Uint32(b[checksumOffset:]); got != h.Checksum {
		t.Errorf("stored checksum = %#x, want %#x", got, h.Checksum)
	}
}

// TestHeaderSum: the bitwise CRC-32C gives what hash/crc32 gives, so the
// header format is unchanged.
func TestHeaderSum(t *testing.T) {
	table := crc32.MakeTable(crc32.Castagnoli)
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 130 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := headerSum(b), crc32.Checksum(b, table); got != want {
			t.Fatalf("headerSum of %d bytes = %#08x, want %#08x", n, got, want)
		}
	}
}
