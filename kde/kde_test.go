package kde

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

var (
	origin2 = []float64{0, 0}
	mean2   = []float64{0, 0}
	ident2  = []float64{1, 0, 0, 1}
)

func mustSamples(tb testing.TB, n int, mean, cov []float64, seed uint64) []float64 {
	tb.Helper()
	s, err := NormalSamples(n, mean, cov, seed)
	if err != nil {
		tb.Fatalf("NormalSamples: %v", err)
	}
	return s
}

func mustEstimateT(tb testing.TB, samples, x []float64, h float64, k Kernel) float64 {
	tb.Helper()
	p, err := Estimate(samples, x, h, k)
	if err != nil {
		tb.Fatalf("Estimate(h=%v, %v): %v", h, k, err)
	}
	return p
}

// seedEstimate is the seed's definition, written the slow obvious way:
// divide every difference by h and compare with 1/2.
func seedEstimate(samples, x []float64, h float64) float64 {
	d, k := len(x), 0
	for i := 0; i < len(samples); i += d {
		in := true
		for j := range x {
			if !(math.Abs(x[j]-samples[i+j])/h <= 0.5) {
				in = false
				break
			}
		}
		if in {
			k++
		}
	}
	return float64(k) / float64(len(samples)/d) / math.Pow(h, float64(d))
}

func TestToy(t *testing.T) {
	if p := mustEstimateT(t, Toy(), []float64{0, 0, 0}, 1, Hypercube); p != 0.3 {
		t.Errorf("Estimate(toy, origin, h=1) = %v, want 0.3", p)
	}
}

func TestNormalDensity(t *testing.T) {
	p, err := NormalDensity(origin2, mean2, ident2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(p-0.159154943091895) > 1e-12 {
		t.Errorf("NormalDensity(origin) = %v, want 0.159155 (1/2π)", p)
	}
	p, err = NormalDensity([]float64{1, 2, 3}, []float64{1, 2, 3}, []float64{4, 0, 0, 0, 4, 0, 0, 0, 4})
	if want := math.Pow(2*math.Pi*4, -1.5); err != nil || math.Abs(p-want) > 1e-15 {
		t.Errorf("NormalDensity(3-D, var 4) = %v, %v, want %v", p, err, want)
	}
}

func TestNormalSamplesReproducible(t *testing.T) {
	a := mustSamples(t, 1000, mean2, ident2, 123)
	b := mustSamples(t, 1000, mean2, ident2, 123)
	c := mustSamples(t, 1000, mean2, ident2, 124)
	same, differ := true, false
	var sum, sumsq float64
	for i := range a {
		same = same && math.Float64bits(a[i]) == math.Float64bits(b[i])
		differ = differ || a[i] != c[i]
		sum += a[i]
		sumsq += a[i] * a[i]
	}
	if !same || !differ {
		t.Errorf("same seed equal = %v (want true), other seed differs = %v (want true)", same, differ)
	}
	if m, v := sum/2000, sumsq/2000; math.Abs(m) > 0.1 || math.Abs(v-1) > 0.1 {
		t.Errorf("sample mean %v, variance %v, want about 0 and 1", m, v)
	}
}

func TestCubeLimit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		h := math.Exp(r.Float64()*20 - 10)
		lim := cubeLimit(h)
		for _, a := range []float64{
			lim, math.Nextafter(lim, 0), math.Nextafter(lim, 2*lim), math.Nextafter(math.Nextafter(lim, 2*lim), 2*lim),
			0.5 * h, math.Nextafter(0.5*h, h), r.Float64() * h,
		} {
			if got, want := a <= lim, a/h <= 0.5; got != want {
				t.Fatalf("h=%v a=%v: a <= cubeLimit = %v, a/h <= 0.5 = %v", h, a, got, want)
			}
		}
	}
}

// TestHypercubeMatchesSeed checks the threshold form and the specialised
// loops against the seed's division form, bit for bit, on data salted with
// samples exactly on and next to the cube's faces.
func TestHypercubeMatchesSeed(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, d := range []int{1, 2, 3, 5} {
		for _, h := range []float64{0.1, 0.3, 1, 1.1, 1.2, 1.0 + 0.2/99*37, 7.3} {
			x := make([]float64, d)
			for j := range x {
				x[j] = r.NormFloat64() * 0.1
			}
			samples := make([]float64, 0, 3000*d)
			for i := range 3000 {
				for j := range d {
					v := r.NormFloat64()
					switch i % 4 {
					case 1: // on a face, as computed in floating point
						v = x[j] + 0.5*h*float64(1-2*(i/4%2))
					case 2: // one ulp beyond it
						v = math.Nextafter(x[j]+0.5*h, math.Inf(1))
					case 3: // a NaN now and then
						if i%40 == 3 {
							v = math.NaN()
						}
					}
					samples = append(samples, v)
				}
			}
			got := mustEstimateT(t, samples, x, h, Hypercube)
			want := seedEstimate(samples, x, h)
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("d=%d h=%v: Estimate = %v, seed's definition = %v", d, h, got, want)
			}
			lim := cubeLimit(h)
			if gen, spec := countCubeN(samples, x, lim), countCube(samples, x, lim); gen != spec {
				t.Errorf("d=%d h=%v: specialised count %d, general %d", d, h, spec, gen)
			}
		}
	}
}

func TestHypercubeVsTrueDensity(t *testing.T) {
	samples := mustSamples(t, 100000, mean2, ident2, 123)
	truth, _ := NormalDensity(origin2, mean2, ident2)
	for _, h := range []float64{0.3, 0.5, 1} {
		// E[p] = P(|X| <= h/2)^2 / h^2 for a standard normal X.
		q := math.Pow(math.Erf(h/2/math.Sqrt2), 2)
		want := q / (h * h)
		sigma := math.Sqrt(q*(1-q)/100000) / (h * h)
		got := mustEstimateT(t, samples, origin2, h, Hypercube)
		if math.Abs(got-want) > 4*sigma {
			t.Errorf("h=%v: Estimate = %v, want %v ± %v", h, got, want, 4*sigma)
		}
		if h <= 0.5 && math.Abs(got-truth) > 0.05*truth {
			t.Errorf("h=%v: Estimate = %v, want within 5%% of the true %v", h, got, truth)
		}
	}
}

func TestGaussianVsTrueDensity(t *testing.T) {
	samples := mustSamples(t, 100000, mean2, ident2, 7)
	truth, _ := NormalDensity(origin2, mean2, ident2)
	for _, h := range []float64{0.1, 0.3} {
		// Smoothing N(0, I) with a Gaussian kernel of width h gives
		// N(0, (1+h²)I): E[p(0)] = 1 / (2π(1+h²)).
		want := truth / (1 + h*h)
		got := mustEstimateT(t, samples, origin2, h, Gaussian)
		if math.Abs(got-want) > 0.03*want {
			t.Errorf("h=%v: Gaussian Estimate = %v, want %v ± 3%%", h, got, want)
		}
	}
	if got := mustEstimateT(t, samples, origin2, 0.1, Gaussian); math.Abs(got-truth) > 0.04*truth {
		t.Errorf("h=0.1: Gaussian Estimate = %v, want within 4%% of the true %v", got, truth)
	}
}

func TestSweepSerialEqualsGoroutines(t *testing.T) {
	samples := mustSamples(t, 10000, mean2, ident2, 123)
	widths := Linspace(1.0, 1.2, 100)
	for _, k := range []Kernel{Hypercube, Gaussian} {
		serial, err := Sweep(samples, origin2, widths, k)
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{0, 1, 2, 3, 7, 200} {
			got, err := SweepGoroutines(samples, origin2, widths, k, workers)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(serial) {
				t.Fatalf("%v workers=%d: %d points, want %d", k, workers, len(got), len(serial))
			}
			for i := range got {
				if math.Float64bits(got[i].H) != math.Float64bits(serial[i].H) ||
					math.Float64bits(got[i].P) != math.Float64bits(serial[i].P) {
					t.Fatalf("%v workers=%d point %d = %v, serial %v", k, workers, i, got[i], serial[i])
				}
			}
		}
	}
}

func TestSweepOrderedAndSplittable(t *testing.T) {
	samples := mustSamples(t, 2000, mean2, ident2, 1)
	widths := Arange(0.1, 1.3, 0.1)
	shuffled := []float64{widths[5], widths[0], widths[11], widths[3], widths[1], widths[2],
		widths[4], widths[6], widths[10], widths[7], widths[9], widths[8]}
	got, err := Sweep(samples, origin2, shuffled, Hypercube)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := Sweep(samples, origin2, widths, Hypercube)
	lo, _ := Sweep(samples, origin2, widths[:5], Hypercube)
	hi, _ := Sweep(samples, origin2, widths[5:], Hypercube)
	joined := append(lo, hi...)
	for i := range whole {
		if got[i] != whole[i] || joined[i] != whole[i] {
			t.Errorf("point %d: shuffled %v, split %v, whole %v", i, got[i], joined[i], whole[i])
		}
	}
}

func TestWidths(t *testing.T) {
	a := Arange(0.1, 1.3, 0.1)
	if len(a) != 12 {
		t.Fatalf("len(Arange(0.1, 1.3, 0.1)) = %d, want 12", len(a))
	}
	for i, h := range a {
		if got, want := strconv.FormatFloat(h, 'g', 12, 64), strconv.FormatFloat(float64(i+1)/10, 'g', -1, 64); got != want {
			t.Errorf("Arange[%d] prints %s, want %s", i, got, want)
		}
	}
	// numpy: np.arange(0.1, 1.3, 0.1)[2] == 0.30000000000000004, [11] == 1.2000000000000002
	if a[2] != 0.30000000000000004 || a[11] != 1.2000000000000002 || a[1] != 0.2 {
		t.Errorf("Arange values %v differ from numpy's", a)
	}
	if n := len(Arange(0, 1, 0.1)); n != 10 {
		t.Errorf("len(Arange(0, 1, 0.1)) = %d, want 10", n)
	}
	if n := len(Arange(1, 0, 0.1)); n != 0 {
		t.Errorf("len(Arange(1, 0, 0.1)) = %d, want 0", n)
	}
	l := Linspace(1.0, 1.2, 100)
	if len(l) != 100 || l[0] != 1 || l[99] != 1.2 {
		t.Fatalf("Linspace(1, 1.2, 100): len %d, first %v, last %v", len(l), l[0], l[99])
	}
	start, stop := 1.0, 1.2 // variables: constant arithmetic would be exact, numpy's is not
	step := (stop - start) / 99
	for i := 1; i < 99; i++ {
		if l[i] != float64(i)*step+start || !(l[i] > l[i-1]) {
			t.Errorf("Linspace[%d] = %v, want %v", i, l[i], float64(i)*step+start)
		}
	}
	if got := Linspace(3, 3, 4); len(got) != 4 || got[2] != 3 {
		t.Errorf("Linspace(3, 3, 4) = %v", got)
	}
}

func TestBadInput(t *testing.T) {
	good := []float64{0, 0, 1, 1}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"point with no coordinates (d = 0)", errOf(Estimate(good, nil, 1, Hypercube)), ErrDimension},
		{"samples not whole rows", errOf(Estimate(good[:3], origin2, 1, Hypercube)), ErrDimension},
		{"no samples", errOf(Estimate(nil, origin2, 1, Hypercube)), ErrNoSamples},
		{"h = 0", errOf(Estimate(good, origin2, 0, Hypercube)), ErrWidth},
		{"h < 0", errOf(Estimate(good, origin2, -1, Gaussian)), ErrWidth},
		{"h NaN", errOf(Estimate(good, origin2, math.NaN(), Hypercube)), ErrWidth},
		{"h +Inf", errOf(Estimate(good, origin2, math.Inf(1), Hypercube)), ErrWidth},
		{"unknown kernel", errOf(Estimate(good, origin2, 1, Kernel(9))), ErrKernel},
		{"sweep with a bad width", errOf(Sweep(good, origin2, []float64{1, 0}, Hypercube)), ErrWidth},
		{"goroutine sweep with a bad kernel", errOf(SweepGoroutines(good, origin2, []float64{1}, Kernel(-1), 2)), ErrKernel},
		{"empty sweep of bad samples", errOf(Sweep(good[:3], origin2, nil, Hypercube)), ErrDimension},
		{"parse kernel", errOf(ParseKernel("epanechnikov")), ErrKernel},
		{"covariance not positive definite", errOf(NormalSamples(10, mean2, []float64{1, 2, 2, 1}, 1)), ErrCovariance},
		{"covariance not symmetric", errOf(NormalSamples(10, mean2, []float64{1, 0.5, 0, 1}, 1)), ErrCovariance},
		{"covariance of wrong size", errOf(NormalDensity(origin2, mean2, []float64{1})), ErrDimension},
		{"density point of wrong size", errOf(NormalDensity([]float64{0}, mean2, ident2)), ErrDimension},
		{"negative sample count", errOf(NormalSamples(-1, mean2, ident2, 1)), ErrNoSamples},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("error = %v, want %v", tt.err, tt.want)
			}
		})
	}
}

func errOf[T any](_ T, err error) error { return err }

func TestKernelNames(t *testing.T) {
	for _, k := range []Kernel{Hypercube, Gaussian} {
		got, err := ParseKernel(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKernel(%q) = %v, %v, want %v", k.String(), got, err, k)
		}
	}
}

func TestEstimateAllocs(t *testing.T) {
	samples := mustSamples(t, 1000, mean2, ident2, 1)
	for _, k := range []Kernel{Hypercube, Gaussian} {
		if n := testing.AllocsPerRun(20, func() { _, _ = Estimate(samples, origin2, 1.1, k) }); n != 0 {
			t.Errorf("%v: Estimate allocs = %v, want 0", k, n)
		}
	}
}
