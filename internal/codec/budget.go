package codec

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// The decoder sizes a Go slice or map from the element count in the CBOR
// head and allocates it before reading a single element, so an 8 MB message
// that claims 8 Mi elements of a 4 KiB struct (each element the one byte of
// an empty map) would make it allocate 32 GiB at once. MaxElements does not
// help: it bounds the count, not count × element size. checkBudget walks the
// CBOR heads first, directed by the Go type the message is decoded into, adds
// up what decoding will allocate (slice backing arrays, map entries, pointer
// targets, strings), and refuses the message as soon as the sum passes the
// budget, before anything is allocated. The Go type is compiled once into a
// tree of nodes (budget_types.go), so the walk does no reflection.
//
// The budget is proportional to the message: a legitimate encoding cannot
// expand by much, because every element costs at least one byte. Measured
// worst cases with this package's CBOR options, as TestBudgetFitsLegitimate
// logs them (bytes the decoder really allocated per input byte):
//
//	value                         bytes in    ratio
//	[]float64 of zeros            9/elem        0.9   (a float64 is written as 9 bytes)
//	[]int64 of zeros              1/elem        8
//	[][512]int64 of zeros         515/elem      8
//	[]string of ""                1/elem       16
//	[]any of nil                  1/elem       16
//	map[int]map[int]int of {}     2/pair       21
//	[]any of empty arrays         1/elem       40
//	[][]int64 of empty slices     1/elem       48    (24 for the header, 24 boxed by reflect)
//
// so DecodeBudgetRatio = 64 leaves headroom over every plain encoding. The
// one kind of legitimate value that can exceed it is a struct whose fields
// are mostly tagged omitempty and zero, encoded as a near-empty map while
// its Go size is large; send such data through a shm.Array instead.
const (
	// DecodeBudgetRatio is how many bytes of Go memory Decode lets each
	// byte of CBOR input describe.
	DecodeBudgetRatio = 64
	// MinDecodeBudget is the budget of a short message, in bytes.
	MinDecodeBudget = 1 << 20
	// MaxDecodeBudget caps the budget of any one message, however long:
	// a 64 MiB message of the densest legitimate kind ([]int64 zeros,
	// 8x) decodes to 512 MiB, while the ratio alone would let one forged
	// message of that size claim 4 GiB of the receiver's memory.
	MaxDecodeBudget = 1 << 30
)

// Cost model constants: approximately what the runtime allocates besides
// the elements themselves.
const (
	mapBaseCost  = 48 // a map header
	mapEntryCost = 16 // per entry: control bytes, load factor slack
	anyBoxCost   = 24 // boxing a value in an interface (a slice header)
	anyTagCost   = 32 // a cbor.Tag in an interface
	// maxWalkDepth bounds the recursion: CBOR nesting (MaxDepth, which the
	// decoder enforces) plus pointer levels of the Go type, which do not
	// nest in CBOR.
	maxWalkDepth = 4*MaxDepth + 8
)

// decodeBudget returns the memory a message of n bytes may decode into.
func decodeBudget(n int) uint64 {
	return min(MaxDecodeBudget, max(MinDecodeBudget, DecodeBudgetRatio*uint64(n)))
}

var (
	errOverBudget = errors.New("over budget")
	errMalformed  = errors.New("malformed or too deeply nested CBOR")
)

// checkBudget adds up what decoding data into a value of the type behind n
// allocates, stopping with errOverBudget as soon as that passes budget. It
// reads data as hostile (every head is bounds-checked) and returns
// errMalformed for what it cannot walk; it does not check for trailing
// bytes or invalid UTF-8, which the decoder rejects itself.
func checkBudget(data []byte, n *tnode, budget uint64) (uint64, error) {
	s := sizer{data: data, budget: budget, worst: n.worst}
	err := s.value(n, 0)
	return s.total, err
}

// sizer walks one CBOR message. The cost it adds up is an upper estimate of
// what the decoder allocates: where the walk cannot tell which Go type an
// item decodes into (a type mismatch, which the decoder rejects anyway, or a
// key it cannot match), it charges the largest type reachable from the root
// (worst) for every item.
type sizer struct {
	data   []byte
	pos    int
	total  uint64
	budget uint64
	worst  uint64
}

// charge adds n × size to the total, saturating, and fails once the total
// passes the budget.
func (s *sizer) charge(n, size uint64) error {
	hi, lo := bits.Mul64(n, size)
	if hi != 0 {
		s.total = ^uint64(0)
		return errOverBudget
	}
	sum, carry := bits.Add64(s.total, lo, 0)
	if carry != 0 {
		s.total = ^uint64(0)
		return errOverBudget
	}
	s.total = sum
	if s.total > s.budget {
		return errOverBudget
	}
	return nil
}

// CBOR major types (RFC 8949 §3.1).
const (
	majorUint   = 0
	majorNegInt = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
)

// head reads the initial byte and argument of the item at s.pos. indef is
// set for an indefinite length (and, with major 7, for the break code).
func (s *sizer) head() (major byte, arg uint64, indef bool, err error) {
	if s.pos >= len(s.data) {
		return 0, 0, false, errMalformed
	}
	b := s.data[s.pos]
	s.pos++
	major, ai := b>>5, b&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), false, nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(s.data)-s.pos < n {
			return 0, 0, false, errMalformed
		}
		b := s.data[s.pos:]
		switch n {
		case 1:
			arg = uint64(b[0])
		case 2:
			arg = uint64(binary.BigEndian.Uint16(b))
		case 4:
			arg = uint64(binary.BigEndian.Uint32(b))
		default:
			arg = binary.BigEndian.Uint64(b)
		}
		s.pos += n
		return major, arg, false, nil
	case ai == 31 && major >= majorBytes && major != majorTag:
		return major, 0, true, nil
	}
	return 0, 0, false, errMalformed
}

// atBreak consumes a break code if one is next.
func (s *sizer) atBreak() (bool, error) {
	if s.pos >= len(s.data) {
		return false, errMalformed
	}
	if s.data[s.pos] == 0xff {
		s.pos++
		return true, nil
	}
	return false, nil
}

// stringBytes consumes the rest of a byte or text string whose head was
// read and returns its length; for a definite length it also returns the
// bytes.
func (s *sizer) stringBytes(arg uint64, indef bool) (uint64, []byte, error) {
	if !indef {
		if arg > uint64(len(s.data)-s.pos) {
			return 0, nil, errMalformed
		}
		b := s.data[s.pos : s.pos+int(arg)]
		s.pos += int(arg)
		return arg, b, nil
	}
	var n uint64
	for {
		brk, err := s.atBreak()
		if err != nil {
			return 0, nil, err
		}
		if brk {
			return n, nil, nil
		}
		_, l, in, err := s.head()
		if err != nil || in || l > uint64(len(s.data)-s.pos) {
			return 0, nil, errMalformed
		}
		s.pos += int(l)
		n += l
	}
}

// elements calls f once per element of an array (pairs: of a map) whose
// head was read, n elements or up to the break code.
func (s *sizer) elements(n uint64, indef bool, f func() error) error {
	for i := uint64(0); indef || i < n; i++ {
		if indef {
			brk, err := s.atBreak()
			if err != nil {
				return err
			}
			if brk {
				return nil
			}
		}
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// value walks one item that decodes into a value of node n's type, already
// allocated by its container.
func (s *sizer) value(n *tnode, depth int) error {
	if depth > maxWalkDepth {
		return errMalformed
	}
	switch n.kind {
	case kindSkip:
		return s.skip(depth)
	case kindAny:
		return s.anyValue(depth)
	case kindOpaque:
		// Custom and special decoders receive the item's bytes; charge
		// their size as what they may reasonably keep.
		start := s.pos
		if err := s.skip(depth); err != nil {
			return err
		}
		return s.charge(1, uint64(s.pos-start)+anyBoxCost)
	}
	start := s.pos
	major, arg, indef, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorTag:
		return s.value(n, depth+1) // tags are unwrapped for ordinary types
	case majorSimple, majorUint, majorNegInt:
		if n.kind == kindPointer { // a number or bool behind a pointer
			return s.charge(1, n.elem.size)
		}
		return nil // null, undefined, bools and numbers allocate nothing
	case majorBytes, majorText:
		length, _, err := s.stringBytes(arg, indef)
		if err != nil {
			return err
		}
		if n.kind == kindPointer {
			if err := s.charge(1, n.elem.size); err != nil {
				return err
			}
		}
		return s.charge(1, length)
	}
	// An array or a map.
	switch n.kind {
	case kindPointer:
		s.pos = start
		if err := s.charge(1, n.elem.size); err != nil {
			return err
		}
		return s.value(n.elem, depth+1)
	case kindSlice:
		if major != majorArray {
			break
		}
		// reflect.MakeSlice boxes the new slice header.
		if err := s.charge(1, anyBoxCost); err != nil {
			return err
		}
		if !indef {
			if err := s.charge(arg, n.elem.size); err != nil {
				return err
			}
			if n.elem.kind == kindScalar {
				return s.scalars(n.elem, arg, depth+1)
			}
		}
		for i := uint64(0); indef || i < arg; i++ {
			if indef {
				if brk, err := s.atBreak(); brk || err != nil {
					return err
				}
				// Grown by appending: charge each element twice for
				// the copies left behind.
				if err := s.charge(2, n.elem.size); err != nil {
					return err
				}
			}
			if err := s.value(n.elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case kindArray:
		if major != majorArray {
			break
		}
		for i := uint64(0); indef || i < arg; i++ {
			if indef {
				if brk, err := s.atBreak(); brk || err != nil {
					return err
				}
			}
			elem := n.elem
			if i >= n.len {
				elem = skipNode // extra elements are dropped
			}
			if err := s.value(elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case kindMap:
		if major != majorMap {
			break
		}
		if err := s.charge(1, mapBaseCost); err != nil {
			return err
		}
		for i := uint64(0); indef || i < arg; i++ {
			if indef {
				if brk, err := s.atBreak(); brk || err != nil {
					return err
				}
			}
			if err := s.charge(1, n.key.size+n.elem.size+mapEntryCost); err != nil {
				return err
			}
			if err := s.value(n.key, depth+1); err != nil {
				return err
			}
			if err := s.value(n.elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case kindStruct:
		if major == majorArray && n.fields.byPos != nil {
			for i := uint64(0); indef || i < arg; i++ {
				if indef {
					if brk, err := s.atBreak(); brk || err != nil {
						return err
					}
				}
				elem := skipNode // more elements than fields: dropped
				if i < uint64(len(n.fields.byPos)) {
					elem = n.fields.byPos[i].node
				}
				if err := s.value(elem, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if major != majorMap || n.fields.toArray {
			break // a mismatch, or a toarray struct the walk cannot lay out
		}
		for i := uint64(0); indef || i < arg; i++ {
			if indef {
				if brk, err := s.atBreak(); brk || err != nil {
					return err
				}
			}
			f, err := s.key(n.fields, depth+1)
			if err != nil {
				return err
			}
			switch {
			case f == nil:
				err = s.skip(depth + 1) // the decoder skips unknown keys
			case f == fallbackField:
				err = s.fallback(depth + 1)
			default:
				if err = s.charge(1, f.embedCost); err == nil {
					err = s.value(f.node, depth+1)
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	// A type mismatch: the decoder will refuse it, but what it allocates
	// on the way cannot be told from the type, so assume the worst.
	s.pos = start
	return s.fallback(depth)
}

// scalars walks count elements of a scalar type (numbers, strings) in a
// tight loop: the common []float64 or []string costs one head read per
// element. Anything else among them goes through value.
func (s *sizer) scalars(n *tnode, count uint64, depth int) error {
	for range count {
		if s.pos >= len(s.data) {
			return errMalformed
		}
		if b := s.data[s.pos]; b>>5 <= majorNegInt || b>>5 == majorSimple {
			if _, _, _, err := s.head(); err != nil {
				return err
			}
			continue
		}
		if err := s.value(n, depth); err != nil {
			return err
		}
	}
	return nil
}

// key reads a map key decoded against a struct and returns the field it can
// select, nil for none (the decoder skips the value), or fallbackField.
func (s *sizer) key(fields *structFields, depth int) (*structField, error) {
	start := s.pos
	major, arg, indef, err := s.head()
	if err != nil {
		return nil, err
	}
	switch major {
	case majorText, majorBytes:
		_, b, err := s.stringBytes(arg, indef)
		if err != nil {
			return nil, err
		}
		if indef {
			return fallbackField, nil // chunked: not worth joining
		}
		return fields.byName(b), nil
	case majorUint, majorNegInt:
		return fields.byInt(major, arg), nil
	}
	s.pos = start
	return nil, s.skip(depth)
}

// anyValue walks an item decoded into an empty interface, as the library's
// default types: uint64, int64, []byte, string, []any, map[any]any, cbor.Tag.
func (s *sizer) anyValue(depth int) error {
	if depth > maxWalkDepth {
		return errMalformed
	}
	major, arg, indef, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorUint, majorNegInt:
		return s.charge(1, 8)
	case majorBytes, majorText:
		n, _, err := s.stringBytes(arg, indef)
		if err != nil {
			return err
		}
		return s.charge(1, n+anyBoxCost)
	case majorArray:
		if err := s.charge(1, anyBoxCost); err != nil {
			return err
		}
		if !indef {
			if err := s.charge(arg, 16); err != nil {
				return err
			}
		}
		return s.elements(arg, indef, func() error {
			if indef {
				if err := s.charge(2, 16); err != nil {
					return err
				}
			}
			return s.anyValue(depth + 1)
		})
	case majorMap:
		if err := s.charge(1, mapBaseCost); err != nil {
			return err
		}
		return s.elements(arg, indef, func() error {
			if err := s.charge(1, 32+mapEntryCost); err != nil {
				return err
			}
			if err := s.anyValue(depth + 1); err != nil {
				return err
			}
			return s.anyValue(depth + 1)
		})
	case majorTag:
		if err := s.charge(1, anyTagCost); err != nil {
			return err
		}
		return s.anyValue(depth + 1)
	case majorSimple:
		return s.charge(1, 8)
	}
	return errMalformed
}

// fallback walks an item whose Go type is unknown, charging for every item
// and element the largest size of any type reachable from the root.
func (s *sizer) fallback(depth int) error {
	if depth > maxWalkDepth {
		return errMalformed
	}
	worst := s.worst
	major, arg, indef, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorBytes, majorText:
		n, _, err := s.stringBytes(arg, indef)
		if err != nil {
			return err
		}
		return s.charge(1, n+worst)
	case majorArray, majorMap:
		per := uint64(1)
		if major == majorMap {
			per = 2
		}
		if err := s.charge(1, worst); err != nil {
			return err
		}
		if err := s.charge(arg, per*2*worst); err != nil {
			return err
		}
		return s.elements(arg, indef, func() error {
			for range per {
				if indef {
					if err := s.charge(1, 2*worst); err != nil {
						return err
					}
				}
				if err := s.fallback(depth + 1); err != nil {
					return err
				}
			}
			return nil
		})
	case majorTag:
		return s.fallback(depth + 1)
	}
	return s.charge(1, worst)
}

// skip walks an item the decoder skips, charging nothing.
func (s *sizer) skip(depth int) error {
	if depth > maxWalkDepth {
		return errMalformed
	}
	major, arg, indef, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorBytes, majorText:
		_, _, err := s.stringBytes(arg, indef)
		return err
	case majorArray, majorMap:
		per := 1
		if major == majorMap {
			per = 2
		}
		return s.elements(arg, indef, func() error {
			for range per {
				if err := s.skip(depth + 1); err != nil {
					return err
				}
			}
			return nil
		})
	case majorTag:
		return s.skip(depth + 1)
	}
	return nil
}
