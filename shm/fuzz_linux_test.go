package shm

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzAttach writes arbitrary bytes into a sealed memfd and attaches it: any
// input must give a Segment or an error, never a panic or a fault, and a
// Segment must describe only memory that is really mapped. With fixSum set,
// the checksum is recomputed first, so the fuzzer reaches the field checks
// behind it.
func FuzzAttach(f *testing.F) {
	good := make([]byte, HeaderSize+16)
	h := header{Magic: magic, Version: layoutVersion, ID: 9, Size: 16}
	h.encode(good)
	f.Add(good, false)
	arr := make([]byte, HeaderSize+64)
	h = header{Magic: magic, Version: layoutVersion, ID: 10, Size: 64, Flags: flagArray, ElemSize: 8, ElemType: 1}
	h.encode(arr)
	f.Add(arr, false)
	f.Add(arr, true)
	f.Add(good[:HeaderSize], false)
	f.Add([]byte{}, false)
	f.Add([]byte("mprocshm"), false)
	f.Fuzz(func(t *testing.T, data []byte, fixSum bool) {
		if fixSum && len(data) >= HeaderSize {
			binary.LittleEndian.PutUint32(data[checksumOffset:], crc32.Checksum(data[:checksumOffset], crc32.MakeTable(crc32.Castagnoli)))
		}
		fd, err := unix.MemfdCreate("mproc-fuzz", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		file := os.NewFile(uintptr(fd), "fuzz")
		if _, err := file.Write(data); err != nil {
			file.Close()
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, sizeSeals); err != nil {
			file.Close()
			t.Fatal(err)
		}
		s, err := Attach(file)
		if err != nil {
			return
		}
		defer s.Close()
		b := s.Bytes()
		if len(b) != s.Len() || HeaderSize+s.Len() > len(data) {
			t.Fatalf("Len() = %d, len(Bytes()) = %d for a %d-byte file", s.Len(), len(b), len(data))
		}
		if len(b) > 0 {
			_ = b[len(b)-1] // the last payload byte is mapped
		}
		if a, err := ArrayOf[int64](s); err == nil {
			_ = a.Slice()
		}
	})
}
