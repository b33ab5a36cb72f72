package codec

import (
	"bytes"
	"encoding/gob"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// BenchmarkCodec times one encode plus one decode of the same value with
// each candidate encoding, so the choice recorded in doc.go can be checked:
//
//	go test -run '^$' -bench Codec -benchmem -count 3 ./internal/codec
func BenchmarkCodec(b *testing.B) {
	small := task{ID: 12345, Func: 3, X: 1.1, A: -7, B: 1 << 40}
	floats := make([]float64, 1024)
	for i := range floats {
		floats[i] = float64(i) * 0.37
	}
	b.Run("payload=task", func(b *testing.B) { benchCodecs(b, small) })
	b.Run("payload=floats1024", func(b *testing.B) { benchCodecs(b, floats) })
}

func benchCodecs[T any](b *testing.B, v T) {
	b.Run("codec=mproc", func(b *testing.B) {
		c := For[T]()
		var buf []byte
		var out T
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = c.Append(buf[:0], v); err != nil {
				b.Fatal(err)
			}
			if err := c.Decode(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf)), "B/msg")
	})
	b.Run("codec=cbor", func(b *testing.B) {
		var out T
		var n int
		b.ReportAllocs()
		for b.Loop() {
			buf, err := cbor.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if err := cbor.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
			n = len(buf)
		}
		b.ReportMetric(float64(n), "B/msg")
	})
	b.Run("codec=msgpack", func(b *testing.B) {
		var out T
		var n int
		b.ReportAllocs()
		for b.Loop() {
			buf, err := msgpack.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if err := msgpack.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
			n = len(buf)
		}
		b.ReportMetric(float64(n), "B/msg")
	})
	b.Run("codec=gob-per-message", func(b *testing.B) {
		var out T
		var n int
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(v); err != nil {
				b.Fatal(err)
			}
			n = buf.Len()
			if err := gob.NewDecoder(&buf).Decode(&out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "B/msg")
	})
	b.Run("codec=gob-stream", func(b *testing.B) {
		// One encoder and one decoder for the whole run, as a persistent
		// per-worker stream would be; the type header is sent once.
		var buf bytes.Buffer
		enc, dec := gob.NewEncoder(&buf), gob.NewDecoder(&buf)
		var out T
		var n int
		b.ReportAllocs()
		for b.Loop() {
			if err := enc.Encode(v); err != nil {
				b.Fatal(err)
			}
			n = buf.Len()
			if err := dec.Decode(&out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "B/msg")
	})
}
