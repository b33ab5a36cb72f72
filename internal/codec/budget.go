package codec

import (
	"errors"
	"math/big"
	"math/bits"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// The decoder sizes a Go slice or map from the element count in the CBOR
// head and allocates it before reading a single element, so an 8 MB message
// that claims 8 Mi elements of a 4 KiB struct (each element the one byte of
// an empty map) would make it allocate 32 GiB at once. MaxElements does not
// help: it bounds the count, not count × element size. checkBudget walks the
// CBOR heads first, directed by the Go type the message is decoded into, adds
// up what decoding will allocate (slice backing arrays, map entries, pointer
// targets, strings), and refuses the message as soon as the sum passes the
// budget, before anything is allocated.
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
)

// Cost model constants: approximately what the runtime allocates besides
// the elements themselves.
const (
	mapBaseCost  = 48 // a map header
	mapEntryCost = 16 // per entry: control bytes, load factor slack
	anyBoxCost   = 24 // boxing a value in an interface (a slice header)
	anyTagCost   = 32 // a cbor.Tag in an interface
	maxWalkDepth = MaxDepth + 2
)

// decodeBudget returns the memory a message of n bytes may decode into.
func decodeBudget(n int) uint64 {
	return max(MinDecodeBudget, DecodeBudgetRatio*uint64(n))
}

var (
	errOverBudget = errors.New("over budget")
	errMalformed  = errors.New("malformed CBOR head")

	typeAny          = reflect.TypeFor[any]()
	typeTime         = reflect.TypeFor[time.Time]()
	typeBigInt       = reflect.TypeFor[big.Int]()
	typeTag          = reflect.TypeFor[cbor.Tag]()
	typeRawTag       = reflect.TypeFor[cbor.RawTag]()
	cborUnmarshaler  = reflect.TypeFor[cbor.Unmarshaler]()
	fallbackSizes    sync.Map // reflect.Type -> uint64
	structFieldCache sync.Map // reflect.Type -> *structFields
)

// checkBudget reports, without allocating in proportion to data, whether
// decoding data (well-formed CBOR, checked before) into a value of type t
// stays within budget bytes. The error is errOverBudget, or errMalformed for
// heads the walk cannot read.
func checkBudget(data []byte, t reflect.Type, budget uint64) (uint64, error) {
	s := sizer{data: data, budget: budget, root: t}
	err := s.value(t, 0)
	return s.total, err
}

// sizer walks one CBOR message. The cost it adds up is an upper estimate of
// what the decoder allocates: where the walk cannot tell which Go type an
// item decodes into (a type mismatch, which the decoder rejects anyway, or a
// key it cannot match), it charges the largest type reachable from the root.
type sizer struct {
	data   []byte
	pos    int
	total  uint64
	budget uint64
	root   reflect.Type
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
		for _, c := range s.data[s.pos : s.pos+n] {
			arg = arg<<8 | uint64(c)
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

// value walks one item that decodes into a value of type t, already
// allocated by its container. t == nil means the decoder skips the item.
func (s *sizer) value(t reflect.Type, depth int) error {
	if depth > maxWalkDepth {
		return errMalformed
	}
	if t == nil {
		return s.skip(depth)
	}
	if opaque(t) {
		// Custom and special decoders receive the item's bytes; charge
		// their size as what they may reasonably keep.
		start := s.pos
		if err := s.skip(depth); err != nil {
			return err
		}
		return s.charge(1, uint64(s.pos-start)+anyBoxCost)
	}
	if t.Kind() == reflect.Interface || t == typeTag {
		// An interface the caller left nil gets the default types; a
		// cbor.Tag holds its content in an interface.
		return s.anyValue(depth)
	}
	start := s.pos
	major, arg, indef, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorTag:
		return s.value(t, depth+1) // tags are unwrapped for ordinary types
	case majorSimple:
		if t.Kind() == reflect.Pointer { // a float or bool behind a pointer
			return s.charge(1, uint64(t.Elem().Size()))
		}
		return nil // null, undefined, bools and floats allocate nothing
	case majorBytes, majorText:
		n, _, err := s.stringBytes(arg, indef)
		if err != nil {
			return err
		}
		if t.Kind() == reflect.Pointer {
			if err := s.charge(1, uint64(t.Elem().Size())); err != nil {
				return err
			}
		}
		return s.charge(1, n)
	case majorUint, majorNegInt:
		if t.Kind() == reflect.Pointer {
			return s.charge(1, uint64(t.Elem().Size()))
		}
		return nil
	}
	// An array or a map.
	switch t.Kind() {
	case reflect.Pointer:
		s.pos = start
		if err := s.charge(1, uint64(t.Elem().Size())); err != nil {
			return err
		}
		return s.value(t.Elem(), depth+1)
	case reflect.Slice:
		if major != majorArray {
			break
		}
		elem := t.Elem()
		// reflect.MakeSlice boxes the new slice header.
		if err := s.charge(1, anyBoxCost); err != nil {
			return err
		}
		if !indef {
			if err := s.charge(arg, uint64(elem.Size())); err != nil {
				return err
			}
		}
		return s.elements(arg, indef, func() error {
			if indef {
				// Grown by appending: charge each element twice for
				// the copies left behind.
				if err := s.charge(2, uint64(elem.Size())); err != nil {
					return err
				}
			}
			return s.value(elem, depth+1)
		})
	case reflect.Array:
		if major != majorArray {
			break
		}
		elem, i := t.Elem(), 0
		return s.elements(arg, indef, func() error {
			i++
			if i > t.Len() {
				return s.skip(depth + 1) // extra elements are dropped
			}
			return s.value(elem, depth+1)
		})
	case reflect.Map:
		if major != majorMap {
			break
		}
		key, elem := t.Key(), t.Elem()
		if err := s.charge(1, mapBaseCost); err != nil {
			return err
		}
		return s.elements(arg, indef, func() error {
			if err := s.charge(1, uint64(key.Size()+elem.Size())+mapEntryCost); err != nil {
				return err
			}
			if err := s.value(key, depth+1); err != nil {
				return err
			}
			return s.value(elem, depth+1)
		})
	case reflect.Struct:
		fields := fieldsOf(t)
		if major != majorMap || fields.toArray {
			break // a toarray struct's positions are not modelled: fallback
		}
		return s.elements(arg, indef, func() error {
			f, err := s.key(fields, depth+1)
			if err != nil {
				return err
			}
			if f == nil {
				return s.skip(depth + 1)
			}
			if f == fallbackField {
				return s.fallback(depth + 1)
			}
			return s.field(f, depth+1)
		})
	}
	// A type mismatch: the decoder will refuse it, but what it allocates
	// on the way cannot be told from t, so assume the worst.
	s.pos = start
	return s.fallback(depth)
}

// opaque reports whether the CBOR library decodes t by a method or a
// special case that takes the item's bytes whole (cbor.Unmarshaler,
// time.Time, big.Int, cbor.RawTag) rather than by kind. A BinaryUnmarshaler
// is not opaque: the library calls it for byte strings only, which the walk
// charges by length anyway, and decodes any other item by kind.
func opaque(t reflect.Type) bool {
	switch t {
	case typeTime, typeBigInt, typeRawTag:
		return true
	}
	return t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(cborUnmarshaler)
}

// field walks the value of a struct field, charging the embedded structs
// reached through nil pointers that the decoder allocates on the way.
func (s *sizer) field(f *structField, depth int) error {
	if err := s.charge(1, f.embedCost); err != nil {
		return err
	}
	return s.value(f.typ, depth)
}

// fallbackField marks a key the walk cannot match reliably.
var fallbackField = &structField{}

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
			return fallbackField, nil
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
	worst := fallbackSize(s.root)
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

// fallbackSize returns the largest per-item cost of any type reachable from
// t: its size plus a map entry's overhead.
func fallbackSize(t reflect.Type) uint64 {
	if v, ok := fallbackSizes.Load(t); ok {
		return v.(uint64)
	}
	var worst uint64 = 32 + mapEntryCost // an entry of map[any]any
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if t == nil || seen[t] {
			return
		}
		seen[t] = true
		worst = max(worst, uint64(t.Size())+mapEntryCost)
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(t.Elem())
		case reflect.Map:
			worst = max(worst, uint64(t.Key().Size()+t.Elem().Size())+mapEntryCost)
			walk(t.Key())
			walk(t.Elem())
		case reflect.Struct:
			for i := range t.NumField() {
				walk(t.Field(i).Type)
			}
		}
	}
	walk(t)
	fallbackSizes.Store(t, worst)
	return worst
}

// structField is a struct field a CBOR map key can select.
type structField struct {
	typ       reflect.Type
	embedCost uint64 // sizes of embedded structs reached through pointers
}

// structFields lists the fields of a struct type by every name the CBOR
// library might match a key against: each field's Go name and its cbor or
// json tag name, including fields promoted from embedded structs. This is a
// superset of the fields the decoder selects, so a key the walk cannot
// match is one the decoder skips.
type structFields struct {
	list     []structField
	names    map[string][]int // name -> indices into list
	fold     map[string][]int // ASCII-lowered name -> indices into list
	slowFold bool             // some name is not ASCII: fold with strings.EqualFold
	toArray  bool
}

func fieldsOf(t reflect.Type) *structFields {
	if v, ok := structFieldCache.Load(t); ok {
		return v.(*structFields)
	}
	fs := &structFields{names: map[string][]int{}}
	if f, ok := t.FieldByName("_"); ok && strings.Contains(f.Tag.Get("cbor"), "toarray") {
		fs.toArray = true
	}
	// Every embedding path is followed (the library keeps the shallowest of
	// several, and the embedded pointers on the way decide what it
	// allocates), except around a cycle.
	inPath := map[reflect.Type]bool{}
	var collect func(t reflect.Type, embedCost uint64)
	collect = func(t reflect.Type, embedCost uint64) {
		if inPath[t] || len(inPath) > MaxDepth {
			return
		}
		inPath[t] = true
		defer delete(inPath, t)
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Name == "_" {
				continue
			}
			i := len(fs.list)
			fs.list = append(fs.list, structField{typ: f.Type, embedCost: embedCost})
			fs.names[f.Name] = append(fs.names[f.Name], i)
			for _, key := range []string{"cbor", "json"} {
				if name, _, _ := strings.Cut(f.Tag.Get(key), ","); name != "" && name != "-" {
					fs.names[name] = append(fs.names[name], i)
				}
			}
			if f.Anonymous {
				et, cost := f.Type, embedCost
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
					cost += uint64(et.Size())
				}
				if et.Kind() == reflect.Struct {
					collect(et, cost)
				}
			}
		}
	}
	collect(t, 0)
	fs.fold = map[string][]int{}
	for name, idx := range fs.names {
		if !isASCII(name) {
			fs.slowFold = true
		}
		lower := strings.ToLower(name)
		fs.fold[lower] = append(fs.fold[lower], idx...)
	}
	actual, _ := structFieldCache.LoadOrStore(t, fs)
	return actual.(*structFields)
}

// byName returns the field a text key selects. The library matches a key
// exactly, then case-insensitively; the fields whose names fold to the key
// include both, and if they disagree the walk cannot tell which one the
// decoder picks, so it gets fallbackField.
func (fs *structFields) byName(key []byte) *structField {
	var buf [64]byte
	if !fs.slowFold && len(key) <= len(buf) && isASCII(string(key)) {
		for i, c := range key {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if idx := fs.fold[string(buf[:len(key)])]; len(idx) > 0 {
			return fs.one(idx)
		}
		return nil
	}
	var found *structField
	for name, idx := range fs.names {
		if strings.EqualFold(name, string(key)) {
			f := fs.one(idx)
			if found != nil && found != f {
				return fallbackField
			}
			found = f
		}
	}
	return found
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// byInt returns the field an integer key (keyasint) selects.
func (fs *structFields) byInt(major byte, arg uint64) *structField {
	if major == majorNegInt || arg > 1<<20 {
		// Field names are short; a negative or long number names
		// at most an odd field: be conservative.
		if len(fs.names) == 0 {
			return nil
		}
		return fallbackField
	}
	var buf [8]byte
	n := len(buf)
	for v := arg; ; v /= 10 {
		n--
		buf[n] = byte('0' + v%10)
		if v < 10 {
			break
		}
	}
	if idx := fs.names[string(buf[n:])]; len(idx) > 0 {
		return fs.one(idx)
	}
	return nil
}

// one returns the field behind idx, or fallbackField when idx holds fields
// of different types (the walk cannot tell which one the decoder picks).
func (fs *structFields) one(idx []int) *structField {
	f := &fs.list[idx[0]]
	for _, i := range idx[1:] {
		g := &fs.list[i]
		if g.typ != f.typ || g.embedCost != f.embedCost {
			return fallbackField
		}
	}
	return f
}
