package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePlot draws the benchmark as the seed's figure does: one horizontal
// bar per configuration (serial at the bottom), its speedup over serial
// beside it, and a dashed line at the serial time.
func writePlot(path string, results []benchResult, n int) error {
	p := plot.New()
	p.Title.Text = "Serial vs. parallel Parzen-window estimation"
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = fmt.Sprintf("time in milliseconds for n=%d (median)", n)
	p.Y.Label.Text = "configuration"

	ms := make(plotter.Values, len(results))
	labels := make([]string, len(results))
	for i, r := range results {
		ms[i] = float64(r.median().Microseconds()) / 1000
		labels[i] = r.bar
	}
	bars, err := plotter.NewBarChart(ms, vg.Points(28))
	if err != nil {
		return fmt.Errorf("plot bars: %w", err)
	}
	bars.Horizontal = true
	bars.Color = color.NRGBA{R: 60, G: 160, B: 60, A: 110} // the seed's translucent green
	bars.LineStyle.Width = vg.Points(0.5)
	p.Add(bars)
	p.NominalY(labels...)

	maxMs := 0.0
	for _, v := range ms {
		maxMs = max(maxMs, v)
	}
	xys := make(plotter.XYs, len(ms))
	texts := make([]string, len(ms))
	for i, v := range ms {
		// Just right of the bar.
		xys[i] = plotter.XY{X: v + 0.015*maxMs, Y: float64(i)}
		texts[i] = fmt.Sprintf("%.2fx", ms[0]/v)
	}
	speedups, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
	if err != nil {
		return fmt.Errorf("plot labels: %w", err)
	}
	for i := range speedups.TextStyle {
		speedups.TextStyle[i].YAlign = -0.5 // centred on the bar
	}
	p.Add(speedups)

	serial, err := plotter.NewLine(plotter.XYs{{X: ms[0], Y: -1}, {X: ms[0], Y: float64(len(ms))}})
	if err != nil {
		return fmt.Errorf("plot serial line: %w", err)
	}
	serial.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(5)}
	serial.LineStyle.Width = vg.Points(1)
	p.Add(serial)
	p.Add(plotter.NewGrid())

	p.X.Min, p.X.Max = 0, maxMs*1.2
	p.Y.Min, p.Y.Max = -1, float64(len(ms))
	if err := p.Save(10*vg.Inch, 8*vg.Inch, path); err != nil {
		return fmt.Errorf("save plot: %w", err)
	}
	return nil
}
