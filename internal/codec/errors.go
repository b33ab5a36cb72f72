package codec

import "errors"

var (
	// ErrTooLarge is returned by Append when an encoded value would exceed
	// MaxEncodedLen, and by Decode when its input does. Send large numeric
	// data through a shared array (shm.Array) and pass the handle instead.
	ErrTooLarge = errors.New("codec: encoded value exceeds MaxEncodedLen")

	// ErrLength is returned by Decode when the input for a raw (fixed-size)
	// type is not exactly the size of that type: the bytes were written for
	// another type, or were cut short.
	ErrLength = errors.New("codec: input length does not match the fixed size of the type")

	// ErrInvalidBool is returned by Decode when the input for a raw type holds
	// a byte other than 0 or 1 where the type has a bool.
	ErrInvalidBool = errors.New("codec: invalid bool byte in raw input")
)
