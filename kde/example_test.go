package kde_test

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mproc/mproc/kde"
)

// The seed's toy example: ten 3-D points, three of them inside the unit cube
// centred on the origin.
func ExampleEstimate() {
	p, err := kde.Estimate(kde.Toy(), []float64{0, 0, 0}, 1, kde.Hypercube)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("p(x) =", p)
	// Output:
	// p(x) = 0.3
}

// The seed's window sweep: 10000 samples of the 2-D standard normal,
// h = 0.1 .. 1.2, printed as the seed printed them (12 significant digits).
// With h^d in the denominator the estimate stays near the true density
// 0.159155 and sinks slowly as the window widens (the seed divided by h
// once, not h^2, which is why its table climbs from 0.016 to 0.1685).
func ExampleSweep() {
	mean, cov := []float64{0, 0}, []float64{1, 0, 0, 1}
	samples, _ := kde.NormalSamples(10000, mean, cov, 123)
	truth, _ := kde.NormalDensity([]float64{0, 0}, mean, cov)
	points, err := kde.Sweep(samples, []float64{0, 0}, kde.Arange(0.1, 1.3, 0.1), kde.Hypercube)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("actual probability density: %.6f\n", truth)
	for _, pt := range points {
		h := strconv.FormatFloat(pt.H, 'g', 12, 64) // numpy prints 0.30000000000000004 as 0.3
		if !strings.ContainsAny(h, ".e") {
			h += ".0"
		}
		fmt.Printf("h = %s, p(x) = %.4f\n", h, pt.P)
	}
	// Output:
	// actual probability density: 0.159155
	// h = 0.1, p(x) = 0.2000
	// h = 0.2, p(x) = 0.1525
	// h = 0.3, p(x) = 0.1478
	// h = 0.4, p(x) = 0.1500
	// h = 0.5, p(x) = 0.1456
	// h = 0.6, p(x) = 0.1497
	// h = 0.7, p(x) = 0.1533
	// h = 0.8, p(x) = 0.1486
	// h = 0.9, p(x) = 0.1465
	// h = 1.0, p(x) = 0.1433
	// h = 1.1, p(x) = 0.1386
	// h = 1.2, p(x) = 0.1383
}
