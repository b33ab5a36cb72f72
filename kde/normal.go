package kde

import (
	"fmt"
	"math/rand/v2"

	"github.com/mproc/mproc/shm"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat/distmv"
)

// NormalSamples draws n samples from the multivariate normal distribution
// with the given mean (d values) and covariance (d×d values, row-major), and
// returns them as one flat row-major slice of n*d values. The same seed
// gives the same samples (with the same gonum version), on every platform.
func NormalSamples(n int, mean, cov []float64, seed uint64) ([]float64, error) {
	dist, err := normalSampler(n, mean, cov, seed)
	if err != nil {
		return nil, err
	}
	out := make([]float64, n*len(mean))
	fillNormal(out, dist, len(mean))
	return out, nil
}

// NormalSamplesShared is NormalSamples drawn straight into a new shared
// array, frozen read-only: the same values for the same seed, ready for
// SweepPool without the copy ShareSamples makes. The caller closes it.
func NormalSamplesShared(n int, mean, cov []float64, seed uint64) (*shm.Array[float64], error) {
	dist, err := normalSampler(n, mean, cov, seed)
	if err != nil {
		return nil, err
	}
	a, err := shm.NewArray[float64](n * len(mean))
	if err != nil {
		return nil, fmt.Errorf("normal samples: %w", err)
	}
	fillNormal(a.Slice(), dist, len(mean))
	if err := a.Freeze(); err != nil {
		a.Close()
		return nil, fmt.Errorf("normal samples: %w", err)
	}
	return a, nil
}

func normalSampler(n int, mean, cov []float64, seed uint64) (*distmv.Normal, error) {
	if n < 0 {
		return nil, fmt.Errorf("normal samples: n = %d: %w", n, ErrNoSamples)
	}
	dist, err := newNormal(mean, cov, rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	if err != nil {
		return nil, fmt.Errorf("normal samples: %w", err)
	}
	return dist, nil
}

// fillNormal fills out with len(out)/d samples of dist, one after another.
func fillNormal(out []float64, dist *distmv.Normal, d int) {
	for i := range len(out) / d {
		dist.Rand(out[i*d : (i+1)*d : (i+1)*d])
	}
}

// NormalDensity returns the probability density at x of the multivariate
// normal distribution with the given mean and covariance (row-major): the
// true value an estimate from NormalSamples approaches. For the 2-D standard
// normal at the origin it is 1/(2π) ≈ 0.159155.
func NormalDensity(x, mean, cov []float64) (float64, error) {
	if len(x) != len(mean) {
		return 0, fmt.Errorf("normal density: point has %d coordinates, mean %d: %w", len(x), len(mean), ErrDimension)
	}
	dist, err := newNormal(mean, cov, nil)
	if err != nil {
		return 0, fmt.Errorf("normal density: %w", err)
	}
	return dist.Prob(x), nil
}

func newNormal(mean, cov []float64, src rand.Source) (*distmv.Normal, error) {
	d := len(mean)
	if d == 0 || len(cov) != d*d {
		return nil, fmt.Errorf("mean of %d values needs a covariance of %d, got %d: %w", d, d*d, len(cov), ErrDimension)
	}
	for i := range d {
		for j := range i {
			if cov[i*d+j] != cov[j*d+i] {
				return nil, fmt.Errorf("cov[%d][%d] != cov[%d][%d]: %w", i, j, j, i, ErrCovariance)
			}
		}
	}
	dist, ok := distmv.NewNormal(mean, mat.NewSymDense(d, cov), src)
	if !ok {
		return nil, ErrCovariance
	}
	return dist, nil
}

// Toy returns the seed's ten 3-D points as a flat row-major slice: three
// inside the unit cube centred on the origin, seven outside it. With the
// hypercube kernel and h = 1 the estimate at the origin is 3/10 = 0.3.
func Toy() []float64 {
	return []float64{
		// inside
		0, 0, 0,
		0.2, 0.2, 0.2,
		0.1, -0.1, -0.3,
		// outside
		-1.2, 0.3, -0.3,
		0.8, -0.82, -0.9,
		1, 0.6, -0.7,
		0.8, 0.7, 0.2,
		0.7, -0.8, -0.45,
		-0.3, 0.6, 0.9,
		0.7, -0.6, -0.8,
	}
}
