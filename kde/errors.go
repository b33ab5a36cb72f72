package kde

import "errors"

var (
	// ErrDimension is returned when the point x has no coordinates, or when
	// the sample slice does not hold a whole number of rows of len(x)
	// coordinates, or when a mean or covariance does not match the dimension.
	ErrDimension = errors.New("kde: dimension mismatch")

	// ErrNoSamples is returned when an estimate is asked of zero samples.
	ErrNoSamples = errors.New("kde: no samples")

	// ErrWidth is returned for a window width that is not a finite number
	// greater than zero.
	ErrWidth = errors.New("kde: window width must be finite and > 0")

	// ErrKernel is returned for a Kernel value or name this package does not
	// know.
	ErrKernel = errors.New("kde: unknown kernel")

	// ErrCovariance is returned when a covariance matrix is not symmetric
	// positive definite.
	ErrCovariance = errors.New("kde: covariance is not symmetric positive definite")
)
