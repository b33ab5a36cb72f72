package codec

import "errors"

var (
	// ErrTooLarge is returned by Append when an encoded value would exceed
	// MaxEncodedLen, and by Decode when its input does. Send large numeric
	// data through a shared array (shm.Array) and pass the handle instead.
	ErrTooLarge = errors.New("codec: encoded value exceeds MaxEncodedLen")

	// ErrOverBudget is returned by Decode when a CBOR message describes a
	// value that would take more memory than such a message can
	// legitimately hold (DecodeBudgetRatio bytes per input byte, at least
	// MinDecodeBudget): its element counts were forged or corrupted, for
	// example by a buggy worker. Nothing has been allocated for it.
	ErrOverBudget = errors.New("codec: decoded value would exceed the memory budget of its message")

	// ErrLength is returned by Decode when the input for a raw (fixed-size)
	// type is not exactly the size of that type: the bytes were written for
	// another type, or were cut short.
	ErrLength = errors.New("codec: input length does not match the fixed size of the type")

	// ErrInvalidBool is returned by Decode when the input for a raw type holds
	// a byte other than 0 or 1 where the type has a bool.
	ErrInvalidBool = errors.New("codec: invalid bool byte in raw input")
)
