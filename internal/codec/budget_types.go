package codec

import (
	"math/big"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// tnode is a Go type as the budget walk sees it, compiled once per type
// (nodeOf) so that walking a message does no reflection.
type tnode struct {
	kind   nodeKind
	size   uint64 // reflect.Type.Size
	elem   *tnode // pointer target, slice, array or map element
	key    *tnode // map key
	len    uint64 // array length
	fields *structFields
	worst  uint64 // root nodes: fallbackSize of the type
}

type nodeKind uint8

const (
	kindScalar  nodeKind = iota // numbers, bools, strings: nothing nested
	kindSkip                    // an item the decoder skips
	kindAny                     // interfaces (default types) and cbor.Tag
	kindOpaque                  // decoded whole by a method or special case
	kindPointer                 // allocates its target
	kindSlice                   // allocates count × element size
	kindArray                   // inline; its elements may allocate
	kindMap                     // allocates entries
	kindStruct                  // inline; its fields may allocate
)

// skipNode stands for items the decoder drops, such as extra elements of a
// Go array.
var skipNode = &tnode{kind: kindSkip}

var (
	typeTime        = reflect.TypeFor[time.Time]()
	typeBigInt      = reflect.TypeFor[big.Int]()
	typeTag         = reflect.TypeFor[cbor.Tag]()
	typeRawTag      = reflect.TypeFor[cbor.RawTag]()
	cborUnmarshaler = reflect.TypeFor[cbor.Unmarshaler]()

	nodes sync.Map // reflect.Type -> *tnode, roots only
)

// nodeOf returns the compiled node of t, building it on first use.
func nodeOf(t reflect.Type) *tnode {
	if n, ok := nodes.Load(t); ok {
		return n.(*tnode)
	}
	n := build(t, map[reflect.Type]*tnode{})
	n.worst = fallbackSize(t)
	actual, _ := nodes.LoadOrStore(t, n)
	return actual.(*tnode)
}

// build compiles t; memo holds the nodes of this build, so that a
// recursive type becomes a cyclic graph instead of an endless one.
func build(t reflect.Type, memo map[reflect.Type]*tnode) *tnode {
	if n, ok := memo[t]; ok {
		return n
	}
	n := &tnode{size: uint64(t.Size())}
	memo[t] = n
	switch {
	case t.Kind() == reflect.Interface || t == typeTag:
		// An interface the caller left nil gets the default types; a
		// cbor.Tag holds its content in an interface.
		n.kind = kindAny
	case opaque(t):
		n.kind = kindOpaque
	case t.Kind() == reflect.Pointer:
		n.kind, n.elem = kindPointer, build(t.Elem(), memo)
	case t.Kind() == reflect.Slice:
		n.kind, n.elem = kindSlice, build(t.Elem(), memo)
	case t.Kind() == reflect.Array:
		n.kind, n.elem, n.len = kindArray, build(t.Elem(), memo), uint64(t.Len())
	case t.Kind() == reflect.Map:
		n.kind, n.key, n.elem = kindMap, build(t.Key(), memo), build(t.Elem(), memo)
	case t.Kind() == reflect.Struct:
		n.kind, n.fields = kindStruct, fieldsOf(t, memo)
	default:
		n.kind = kindScalar
	}
	return n
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

// fallbackSize returns the largest per-item cost of any type reachable from
// t: its size plus a map entry's overhead.
func fallbackSize(t reflect.Type) uint64 {
	var worst uint64 = 32 + mapEntryCost // an entry of map[any]any
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
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
	return worst
}

// structField is a struct field a CBOR map key can select.
type structField struct {
	node      *tnode
	embedCost uint64 // sizes of embedded structs reached through pointers
}

// fallbackField marks a key the walk cannot match reliably.
var fallbackField = &structField{}

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
	// byPos lists a toarray struct's fields in CBOR array order; nil if
	// the walk cannot tell it (embedded structs), which falls back.
	byPos []*structField
}

func fieldsOf(t reflect.Type, memo map[reflect.Type]*tnode) *structFields {
	fs := &structFields{names: map[string][]int{}}
	if f, ok := t.FieldByName("_"); ok && strings.Contains(f.Tag.Get("cbor"), "toarray") {
		fs.toArray = true
		fs.byPos = positional(t, memo)
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
			fs.list = append(fs.list, structField{node: build(f.Type, memo), embedCost: embedCost})
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
	return fs
}

// positional returns the fields of a toarray struct in the order the CBOR
// library puts them in the array: exported fields in declaration order,
// without those tagged "-". With an embedded struct the order depends on
// the library's promotion rules, which the walk does not model: nil.
func positional(t reflect.Type, memo map[reflect.Type]*tnode) []*structField {
	var list []*structField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil
		}
		tag := f.Tag.Get("cbor")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		list = append(list, &structField{node: build(f.Type, memo)})
	}
	return list
}

// byName returns the field a text key selects. The library matches a key
// exactly, then case-insensitively among names of the same byte length
// (strings.EqualFold); the fields whose names fold to the key include both,
// and if they disagree the walk cannot tell which one the decoder picks, so
// it gets fallbackField. Between ASCII names, folding is ASCII lower-casing,
// and a key with other bytes cannot fold to an ASCII name of its length,
// so only structs with non-ASCII names take the loop.
func (fs *structFields) byName(key []byte) *structField {
	var buf [64]byte
	ascii := isASCII(string(key))
	if ascii && len(key) <= len(buf) {
		for i, c := range key {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if idx := fs.fold[string(buf[:len(key)])]; len(idx) > 0 {
			return fs.one(idx)
		}
		if !fs.slowFold {
			return nil
		}
	} else if !ascii && !fs.slowFold {
		return nil
	}
	var found *structField
	for name, idx := range fs.names {
		if len(name) == len(key) && strings.EqualFold(name, string(key)) {
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
		if g.node != f.node || g.embedCost != f.embedCost {
			return fallbackField
		}
	}
	return f
}
