package kde

import (
	"fmt"
	"strings"
)

// Kernel selects the window function of the Parzen estimator.
type Kernel int

const (
	// Hypercube counts the samples inside the axis-aligned cube of side h
	// centred on x: a sample s counts when |x_j - s_j| / h <= 1/2 for every
	// coordinate j, and p(x) = k / n / h^d. This is the seed's kernel.
	Hypercube Kernel = iota
	// Gaussian weights every sample by the d-dimensional standard normal
	// density of (x - s) / h: p(x) = 1/n Σ (2π)^(-d/2) h^-d exp(-|x-s|²/2h²).
	Gaussian
)

// String returns the kernel's name, as accepted by ParseKernel.
func (k Kernel) String() string {
	switch k {
	case Hypercube:
		return "hypercube"
	case Gaussian:
		return "gaussian"
	}
	return fmt.Sprintf("Kernel(%d)", int(k))
}

// ParseKernel returns the Kernel named s ("hypercube" or "gaussian", any
// case), or an error wrapping ErrKernel.
func ParseKernel(s string) (Kernel, error) {
	switch strings.ToLower(s) {
	case "hypercube":
		return Hypercube, nil
	case "gaussian":
		return Gaussian, nil
	}
	return 0, fmt.Errorf("parse kernel %q (want hypercube or gaussian): %w", s, ErrKernel)
}
