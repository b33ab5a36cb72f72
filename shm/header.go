package shm

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the size of the header at the start of every segment; the
// payload starts right after it, 64-byte aligned.
const HeaderSize = 64

// layoutVersion changes whenever the meaning of a header field changes.
const layoutVersion = 1

// magic identifies an mproc segment. It is stored as bytes, so it reads the
// same on any byte order.
var magic = [8]byte{'m', 'p', 'r', 'o', 'c', 's', 'h', 'm'}

// Header flags.
const (
	flagArray = 1 << 0 // ElemSize and ElemType describe the payload
	flagNamed = 1 << 1 // the segment lives at a /dev/shm path

	knownFlags = flagArray | flagNamed
)

// header is the first HeaderSize bytes of a segment, little-endian. It is
// written once by the creator before anyone else can see the segment and is
// never changed afterwards, so readers take a copy (decodeHeader) and
// validate the copy: a peer scribbling on the mapping later cannot make a
// validated header change under us. layout_test.go pins the offsets.
type header struct {
	Magic    [8]byte // "mprocshm"
	Version  uint32  // layoutVersion
	Flags    uint32  // flag* bits
	ID       uint64  // random, nonzero; the key of the process-wide registry
	Size     uint64  // payload bytes after the header
	ElemSize uint64  // arrays: bytes per element; otherwise 0
	ElemType uint64  // arrays: fingerprint of the element type; otherwise 0
	_        [12]byte
	Checksum uint32 // CRC-32C of bytes [0, checksumOffset)
}

// checksumOffset is where header.Checksum starts; the checksum covers every
// byte before it.
const checksumOffset = HeaderSize - 4

// headerSum is the CRC-32C (Castagnoli) of a header's first bytes, the
// value crc32.Checksum gives with crc32.MakeTable(crc32.Castagnoli), worked
// out bit by bit. MakeTable builds hash/crc32's SSE4.2 tables on first use
// (CRCs of a kilobyte and a half for each of 2,048 entries): 175-210 µs on
// this guest, which every worker paid when it attached its link segment at
// start-up. Sixty bytes bit by bit take about a microsecond.
func headerSum(b []byte) uint32 {
	const castagnoliReversed = 0x82f63b78
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			crc = crc>>1 ^ castagnoliReversed&-(crc&1)
		}
	}
	return ^crc
}

// encode writes h into b[:HeaderSize] with a fresh checksum.
func (h *header) encode(b []byte) {
	h.Checksum = 0
	if _, err := binary.Encode(b[:HeaderSize], binary.LittleEndian, h); err != nil {
		panic("shm: invariant violated: header does not encode into HeaderSize bytes: " + err.Error())
	}
	h.Checksum = headerSum(b[:checksumOffset])
	binary.LittleEndian.PutUint32(b[checksumOffset:], h.Checksum)
}

// decodeHeader copies and validates the header at the start of b, which is
// the mapping of a file of fileSize bytes. Every field is treated as hostile.
func decodeHeader(b []byte, fileSize int64) (header, error) {
	var h header
	if len(b) < HeaderSize || fileSize < HeaderSize {
		return h, fmt.Errorf("%w: %d bytes, need at least %d", ErrTruncated, min(int64(len(b)), fileSize), HeaderSize)
	}
	var raw [HeaderSize]byte
	copy(raw[:], b) // one snapshot: later checks must not re-read shared memory
	if _, err := binary.Decode(raw[:], binary.LittleEndian, &h); err != nil {
		panic("shm: invariant violated: header does not decode from HeaderSize bytes: " + err.Error())
	}
	if h.Magic != magic {
		return h, fmt.Errorf("%w: starts with %q", ErrBadMagic, h.Magic[:])
	}
	if h.Version != layoutVersion {
		return h, fmt.Errorf("%w: got %d, this build reads %d", ErrVersion, h.Version, layoutVersion)
	}
	if sum := headerSum(raw[:checksumOffset]); sum != h.Checksum {
		return h, fmt.Errorf("%w: stored %#08x, computed %#08x", ErrChecksum, h.Checksum, sum)
	}
	if h.ID == 0 {
		return h, fmt.Errorf("%w: zero id", ErrBadHeader)
	}
	if h.Flags&^knownFlags != 0 {
		return h, fmt.Errorf("%w: unknown flags %#x", ErrBadHeader, h.Flags&^knownFlags)
	}
	// Compare without overflow: Size comes from the file, fileSize from fstat.
	if h.Size > uint64(fileSize-HeaderSize) || h.Size > uint64(len(b)-HeaderSize) {
		return h, fmt.Errorf("%w: header claims %d payload bytes, file holds %d", ErrTruncated, h.Size, fileSize-HeaderSize)
	}
	if h.Flags&flagArray != 0 {
		if h.ElemSize == 0 || h.Size%h.ElemSize != 0 {
			return h, fmt.Errorf("%w: payload of %d bytes is not a whole number of %d-byte elements", ErrBadHeader, h.Size, h.ElemSize)
		}
	} else if h.ElemSize != 0 || h.ElemType != 0 {
		return h, fmt.Errorf("%w: element fields set on a segment that is not an array", ErrBadHeader)
	}
	return h, nil
}
