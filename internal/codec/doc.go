// Package codec turns task arguments, results and queue items into bytes
// and back, independently of the transport that carries them.
//
//	c := codec.For[Task]()            // decided once per type, cached
//	msg, err := c.Append(buf[:0], t)  // append to a reusable buffer
//	err = c.Decode(msg, &t)           // whole message, hostile input
//
// Fixed-size pointer-free types (bool, integers, floats, complex numbers,
// and arrays and structs of those) travel as their raw in-memory bytes:
// Append and Decode are one copy, no reflection and no allocation per call
// (about 25 ns for a 40-byte struct, round trip, measured below). Decode
// demands the exact size of the type and rejects bool bytes other than 0
// and 1.
//
// Every other type travels as CBOR (RFC 8949) through
// github.com/fxamacker/cbor/v2, decoded with limits (MaxEncodedLen,
// MaxElements, MaxDepth) so that corrupt or hostile bytes give an error,
// never a panic or an unbounded allocation: before decoding, Decode adds up
// the memory the message describes (element counts times element sizes,
// nested) and refuses more than DecodeBudgetRatio bytes per input byte
// (ErrOverBudget). Types implementing encoding.BinaryMarshaler and
// encoding.BinaryUnmarshaler travel as a CBOR byte string holding their
// MarshalBinary output; this is how handles such as *shm.Array and
// *ipc.Queue cross process boundaries. Such types never take the raw path,
// even when they are plain data.
//
// # Why CBOR
//
// BenchmarkCodec (codec_bench_test.go) times one encode plus one decode;
// medians of 3 on the 2-vCPU development machine (Go 1.26, loaded):
//
//	payload                  codec            ns/op   allocs  bytes
//	struct, 5 fields         raw (this pkg)      27        0     40
//	                         cbor              1000        2     38
//	                         msgpack           1920        4     56
//	                         gob stream        1190        2     30
//	                         gob per message  31600      181     82
//	[]float64, 1024 elems    cbor             84900        2   9219
//	                         msgpack         149800       13   9219
//	                         gob stream       37100        2   9017
//	                         gob per message  90400      177   9030
//
// Every message must be self-contained: it goes into a slot of a ring, one
// lane per producer, and a worker that dies takes no stream state with it.
// That rules out a persistent gob stream, the only candidate faster than
// CBOR (and only on large numeric slices, which belong in a shm.Array
// anyway); gob per message costs 30 µs and 181 allocations for a small
// struct. Between the self-contained encodings, CBOR is about twice as fast
// as msgpack on both payloads with half the allocations or fewer, has
// decoding limits built in, and round-trips BinaryMarshaler by default.
//
// # Caveats
//
// Raw bytes are the host's memory layout: native byte order and padding.
// Append zeroes the padding bytes (gaps between fields), which would
// otherwise carry whatever this process's stack held there to the other
// process; blank (_) fields are fields and are copied as they are.
// Both ends must run the same build of the same program on the same
// architecture, which is always the case for mproc's re-executed workers;
// do not store raw encodings or send them to another machine.
//
// Decode writes into *v as it goes; after an error *v may be partly
// written. Decode never retains its input, so the caller may reuse a
// buffer that lies in shared memory as soon as Decode returns.
//
// CBOR encodes a struct as a map keyed by exported field names: unexported
// fields do not travel, while the raw path copies every field. A type that
// needs its unexported state across processes should implement
// encoding.BinaryMarshaler.
package codec
