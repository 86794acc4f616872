package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// compareReports prints, for two result files (for example the same
// benchmark before and after a change), every figure both hold: each run's
// value and ratio to its own baseline, and the change of that ratio. The
// ratios are what compares across runs on a shared machine; each file's
// load averages are printed with it.
//
//	go run ./internal/benchrun -compare OLD.json NEW.json
func compareReports(oldPath, newPath string) (string, error) {
	load := func(p string) (*report, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var r report
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return &r, nil
	}
	a, err := load(oldPath)
	if err != nil {
		return "", err
	}
	b, err := load(newPath)
	if err != nil {
		return "", err
	}
	byID := map[string]*row{}
	for _, x := range a.Rows {
		byID[x.ID] = x
	}
	var out bytes.Buffer
	na, nb := filepath.Base(oldPath), filepath.Base(newPath)
	fmt.Fprintf(&out, "Before: `%s` (%s, segvault %q, load average %s → %s). After: `%s` (%s, segvault %q, load average %s → %s).\n\n",
		na, a.Date, a.Machine.SegvaultVersion, a.Machine.LoadAvgStart, a.Machine.LoadAvgEnd,
		nb, b.Date, b.Machine.SegvaultVersion, b.Machine.LoadAvgStart, b.Machine.LoadAvgEnd)
	out.WriteString("| Measurement | Dataset | Baseline | Before | Before ratio | After | After ratio | After ÷ before (ratios) | Target |\n")
	out.WriteString("|---|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, y := range b.Rows {
		x, ok := byID[y.ID]
		if !ok {
			continue
		}
		base, xr, yr, ch, tgt := "—", "—", "—", "—", "—"
		if y.Baseline != "" {
			base = y.Baseline
		}
		if x.Ratio != 0 {
			xr = fmtRatio(x.Ratio)
		}
		if y.Ratio != 0 {
			yr = fmtRatio(y.Ratio)
		}
		if x.Ratio != 0 && y.Ratio != 0 {
			ch = fmtRatio(y.Ratio / x.Ratio)
		}
		if y.Target != nil {
			tgt = y.Target.String(y.Unit)
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", y.Name, y.Dataset, base, fmtVal(x.Value, x.Unit), xr, fmtVal(y.Value, y.Unit), yr, ch, tgt)
	}
	return out.String(), nil
}
