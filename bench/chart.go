package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels.
const (
	chartWidth = 1100
	labelWidth = 280
	valueWidth = 90
	rowHeight  = 24
	barHeight  = 14
	topMargin  = 40
	axisHeight = 36
)

var (
	white   = color.RGBA{255, 255, 255, 255}
	black   = color.RGBA{0, 0, 0, 255}
	gridGr  = color.RGBA{225, 225, 225, 255}
	floorGr = color.RGBA{150, 150, 150, 255}
	// palette colours the steps in order.
	palette = []color.RGBA{
		{78, 121, 167, 255}, {242, 142, 43, 255}, {225, 87, 89, 255}, {118, 183, 178, 255},
		{89, 161, 79, 255}, {237, 201, 72, 255}, {176, 122, 161, 255}, {255, 157, 167, 255}, {156, 117, 95, 255},
	}
)

// bar is one row: a span on the time axis, in ms.
type bar struct {
	label    string
	from, to float64
	fill     color.RGBA
	// stack, when set, is drawn instead of one span: consecutive segments.
	stack []bar
}

// startupChart draws the start-up breakdown (medians) as a waterfall: one
// row per step starting where the previous ended, the whole stacked on top
// and the raw-boot floors below. It returns nil when no sandbox was timed.
func (b *bench) startupChart() ([]byte, error) {
	var rows, stack []bar
	at := 0.0
	for i, st := range startupSteps {
		s := b.s.Stat("step_" + st.key)
		if s.N == 0 {
			continue
		}
		seg := bar{label: st.label, from: at, to: at + s.Med, fill: palette[i%len(palette)]}
		stack = append(stack, seg)
		rows = append(rows, seg)
		at += s.Med
	}
	if len(rows) == 0 {
		return nil, nil
	}
	rows = append([]bar{{label: "sandbox start to stop (stacked)", to: at, stack: stack}}, rows...)
	for _, ref := range []struct{ key, label string }{
		{"ready_tuned", "StartSandbox to agent ready"},
		{"raw_boot_tuned", "floor: raw boot to poweroff"},
		{"raw_boot_tuned_devices", "raw boot + hull's devices"},
	} {
		if s := b.s.Stat(ref.key); s.N > 0 {
			rows = append(rows, bar{label: ref.label, to: s.Med, fill: floorGr})
		}
	}
	span := 0.0
	for _, r := range rows {
		span = math.Max(span, r.to)
	}

	height := topMargin + len(rows)*rowHeight + axisHeight
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	plotW := float64(chartWidth - labelWidth - valueWidth)
	x := func(v float64) int { return labelWidth + int(math.Round(v/span*plotW)) }
	bottom := topMargin + len(rows)*rowHeight

	step := tickStep(span)
	for t := 0.0; t <= span+1e-9; t += step {
		fillRect(img, x(t), topMargin-4, x(t)+1, bottom, gridGr)
		text(img, x(t)-3, bottom+16, fmt.Sprintf("%.0f", t), black)
	}
	text(img, labelWidth, bottom+32, "milliseconds (medians)", black)
	text(img, 10, 20, fmt.Sprintf("hull start-up breakdown, tuned kernel under TCG, median of %d runs", b.n), black)

	for i, r := range rows {
		y := topMargin + i*rowHeight
		text(img, 10, y+barHeight-2, r.label, black)
		segs := r.stack
		if segs == nil {
			segs = []bar{r}
		}
		for _, s := range segs {
			x0, x1 := x(s.from), x(s.to)
			if x1 <= x0 {
				x1 = x0 + 1
			}
			fillRect(img, x0, y, x1, y+barHeight, s.fill)
		}
		text(img, x(r.to)+4, y+barHeight-2, num(r.to-r.from)+" ms", black)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tickStep picks 1, 2 or 5 × 10^k so that span has at most 10 ticks.
func tickStep(span float64) float64 {
	raw := span / 10
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
}

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
