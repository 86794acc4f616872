package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// row is one figure of the table: segvault's value beside its baseline's.
type row struct {
	ID            string             `json:"id"`
	Group         string             `json:"group"`
	Name          string             `json:"name"`
	Dataset       string             `json:"dataset"`
	Value         float64            `json:"value"`
	Unit          string             `json:"unit"`
	Baseline      string             `json:"baseline,omitempty"`
	BaselineValue float64            `json:"baseline_value,omitempty"`
	Ratio         float64            `json:"ratio,omitempty"` // Value / BaselineValue
	Better        string             `json:"better,omitempty"`
	Notes         string             `json:"notes,omitempty"`
	Extra         map[string]float64 `json:"extra,omitempty"`
	Target        *target            `json:"target,omitempty"`
	Stage         string             `json:"slowest_stage,omitempty"` // what limits the figure, where the harness can tell
	hasBaseline   bool
}

// target is a figure the issue asks for (issue 14's "Figures"), checked
// against this run's ratio or value. Nothing asserts it: the table says
// whether this run met it.
type target struct {
	On    string  `json:"on"` // "ratio" or "value"
	Op    string  `json:"op"` // ">=" or "<="
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

func atLeast(x float64) *target { return &target{On: "ratio", Op: ">=", Value: x} }
func atMost(x float64) *target  { return &target{On: "ratio", Op: "<=", Value: x} }

// valueAtMost is an absolute ceiling on the figure itself (in its unit).
func valueAtMost(x float64) *target { return &target{On: "value", Op: "<=", Value: x} }

func (t *target) eval(x *row) {
	v := x.Ratio
	if t.On == "value" {
		v = x.Value
	}
	if t.On == "ratio" && !x.hasBaseline {
		t.Met = false
		return
	}
	if t.Op == ">=" {
		t.Met = v >= t.Value
	} else {
		t.Met = v <= t.Value
	}
}

func (t *target) String(unit string) string {
	op := "≥"
	if t.Op == "<=" {
		op = "≤"
	}
	var s string
	if t.On == "value" {
		s = op + " " + fmtVal(t.Value, unit)
	} else {
		s = op + " " + fmtRatio(t.Value)
	}
	if t.Met {
		return s + " met"
	}
	return s + " **not met**"
}

type dataset struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Segments    int    `json:"segments"`
	Files       int    `json:"files"`
	Bytes       int64  `json:"bytes"`
}

type machine struct {
	CPUModel        string          `json:"cpu_model"`
	CPUFlags        map[string]bool `json:"cpu_flags"` // the ones that matter to SHA-256, CRC-32C and zstd
	Cores           int             `json:"cores"`
	MemoryGiB       float64         `json:"memory_gib"`
	Kernel          string          `json:"kernel"`
	LoadAvgStart    string          `json:"loadavg_start"`
	LoadAvgEnd      string          `json:"loadavg_end"`
	GoVersion       string          `json:"go_version"`
	SegvaultGo      string          `json:"segvault_go_version"`
	SegvaultVersion string          `json:"segvault_version"`
	Filesystem      string          `json:"work_filesystem,omitempty"`
}

type report struct {
	Date        string             `json:"date"`
	Mode        string             `json:"mode"`
	Seconds     float64            `json:"duration_seconds"`
	Machine     machine            `json:"machine"`
	Sizes       sizes              `json:"sizes"`
	Datasets    []dataset          `json:"datasets"`
	Rows        []*row             `json:"results"`
	NotMeasured []string           `json:"not_measured,omitempty"`
	Warnings    []string           `json:"warnings,omitempty"`
	Failures    []string           `json:"failures,omitempty"`
	StepSeconds map[string]float64 `json:"step_seconds"`
	StepLoadAvg map[string]string  `json:"step_loadavg,omitempty"` // the load average as each step started
	started     time.Time
}

func newReport(sz sizes, bin string) *report {
	r := &report{Mode: sz.Mode, Sizes: sz, StepSeconds: map[string]float64{}, started: time.Now()}
	r.Date = r.started.UTC().Format(time.RFC3339)
	m := &r.Machine
	m.Cores = runtime.NumCPU()
	m.GoVersion = runtime.Version()
	m.LoadAvgStart = loadAvg()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if m.CPUModel == "" {
					m.CPUModel = strings.TrimSpace(v)
				}
			case "flags":
				if m.CPUFlags == nil {
					m.CPUFlags = cpuFlags(v)
				}
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = cstr(u.Sysname[:]) + " " + cstr(u.Release[:]) + " " + cstr(u.Machine[:])
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		m.SegvaultGo = bi.GoVersion
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		m.SegvaultVersion = strings.TrimSpace(string(out))
	}
	return r
}

// reportedCPUFlags are the /proc/cpuinfo flags recorded in every result:
// SHA-NI (crypto/sha256's fast path), AVX2 and AVX-512F (klauspost's
// vectorised paths; Go's CRC-32C uses SSE4.2, present on every x86-64
// machine this runs on).
var reportedCPUFlags = []string{"sha_ni", "avx2", "avx512f"}

// cpuFlags picks reportedCPUFlags out of a cpuinfo "flags" value.
func cpuFlags(v string) map[string]bool {
	have := map[string]bool{}
	for _, f := range strings.Fields(v) {
		have[f] = true
	}
	out := map[string]bool{}
	for _, f := range reportedCPUFlags {
		out[f] = have[f]
	}
	return out
}

func (m machine) flagsText() string {
	if m.CPUFlags == nil {
		return "CPU flags unknown"
	}
	var parts []string
	for _, f := range reportedCPUFlags {
		yes := "no"
		if m.CPUFlags[f] {
			yes = "yes"
		}
		parts = append(parts, f+" "+yes)
	}
	return "CPU flags: " + strings.Join(parts, ", ")
}

func cstr(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// add appends a figure with a baseline; ratio = value / baseline.
func (r *report) add(x row) *row {
	if x.Baseline != "" {
		x.hasBaseline = true
		if x.BaselineValue != 0 {
			x.Ratio = x.Value / x.BaselineValue
		}
	}
	if x.Target != nil {
		x.Target.eval(&x)
	}
	logf("   %-58s %s", x.Name+" ["+x.Dataset+"]", fmtRowValues(&x))
	r.Rows = append(r.Rows, &x)
	return &x
}

func (r *report) dataset(d dataset) { r.Datasets = append(r.Datasets, d) }

func (r *report) finish(start time.Time) {
	r.Seconds = math.Round(time.Since(start).Seconds()*10) / 10
	r.Machine.LoadAvgEnd = loadAvg()
}

func fmtRowValues(x *row) string {
	s := fmtVal(x.Value, x.Unit)
	if x.Baseline != "" {
		s += "  vs " + fmtVal(x.BaselineValue, x.Unit) + fmt.Sprintf("  ratio %s", fmtRatio(x.Ratio))
	}
	return s
}

func fmtRatio(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	default:
		return fmt.Sprintf("%.2f×", v)
	}
}

func fmtVal(v float64, unit string) string {
	var s string
	switch {
	case v == 0:
		s = "0"
	case math.Abs(v) >= 1000:
		s = strconv.FormatFloat(v, 'f', 0, 64)
		s = thousands(s)
	case math.Abs(v) >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 0.1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 2, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func thousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (r *report) markdown() string {
	var b bytes.Buffer
	m := r.Machine
	fmt.Fprintf(&b, "### segvault benchmark, %s mode, %s\n\n", r.Mode, r.Date)
	// The load average before the run is other work (benchrun's own load
	// is in the one at the end).
	loaded := fmt.Sprintf(" (load average %s before the run, %s at its end including the run's own work)", m.LoadAvgStart, m.LoadAvgEnd)
	if la, err := strconv.ParseFloat(strings.Fields(m.LoadAvgStart + " 0")[0], 64); err == nil && la >= 0.5*float64(m.Cores) {
		loaded = " — **shared with other work during the run**" + loaded
	}
	fmt.Fprintf(&b, "Machine: %s (%s), %d cores, %.1f GiB RAM, %s%s. benchrun built with %s; segvault binary %q built with %s. Run time %.0f s.\n\n",
		m.CPUModel, m.flagsText(), m.Cores, m.MemoryGiB, m.Kernel, loaded, m.GoVersion, m.SegvaultVersion, m.SegvaultGo, r.Seconds)
	b.WriteString("| # | Measurement | Dataset | segvault | Baseline | Baseline figure | Ratio | Target (issue 14) |\n")
	b.WriteString("|---|---|---|---:|---|---:|---:|---|\n")
	for i, x := range r.Rows {
		base, bval, ratio, tgt := "—", "—", "—", "—"
		if x.Target != nil {
			tgt = x.Target.String(x.Unit)
		}
		if x.hasBaseline {
			base, bval = x.Baseline, fmtVal(x.BaselineValue, x.Unit)
			ratio = fmtRatio(x.Ratio)
			if x.Better != "" {
				ratio += " (" + x.Better + " is better)"
			}
		}
		name := x.Name
		if x.Notes != "" || x.Stage != "" {
			name += " ¹" + strconv.Itoa(i+1)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", i+1, name, x.Dataset, fmtVal(x.Value, x.Unit), base, bval, ratio, tgt)
	}
	b.WriteString("\nRatio = segvault ÷ baseline, both measured in this run.\n")
	b.WriteString(r.targetSummary())
	var notes []string
	for i, x := range r.Rows {
		if x.Notes != "" || x.Stage != "" {
			n := x.Notes
			if x.Stage != "" {
				n = strings.TrimSpace(n + " **Slowest stage:** " + x.Stage)
			}
			notes = append(notes, fmt.Sprintf("- ¹%d %s", i+1, n))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	if len(r.Datasets) > 0 {
		b.WriteString("\nDatasets (" + r.Mode + " mode):\n\n| Dataset | What it is | Rolled segments | Bytes |\n|---|---|---:|---:|\n")
		for _, d := range r.Datasets {
			segs := "—"
			if d.Segments > 0 {
				segs = thousands(strconv.Itoa(d.Segments))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", d.Name, d.Description, segs, humanBytes(d.Bytes))
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\n**Warnings from this run:**\n\n")
		for _, s := range r.Warnings {
			b.WriteString("- " + s + "\n")
		}
	}
	if len(r.NotMeasured) > 0 {
		b.WriteString("\nNot measured:\n\n")
		for _, s := range r.NotMeasured {
			b.WriteString("- " + s + "\n")
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n**Failed steps in this run:**\n\n")
		for _, s := range r.Failures {
			b.WriteString("- " + s + "\n")
		}
	}
	var steps []string
	for k := range r.StepSeconds {
		steps = append(steps, k)
	}
	sort.Strings(steps)
	var parts []string
	for _, k := range steps {
		p := fmt.Sprintf("%s %.0f s", k, r.StepSeconds[k])
		if la := r.StepLoadAvg[k]; la != "" {
			p += " (load average " + la + " at its start)"
		}
		parts = append(parts, p)
	}
	if len(parts) > 0 {
		b.WriteString("\nStep times: " + strings.Join(parts, ", ") + ".\n")
	}
	return b.String()
}

// targetSummary lists the issue-14 targets of this run, met or not.
func (r *report) targetSummary() string {
	var met, all int
	var lines []string
	for i, x := range r.Rows {
		if x.Target == nil {
			continue
		}
		all++
		if x.Target.Met {
			met++
		}
		v := fmtRatio(x.Ratio) + " of " + x.Baseline
		if x.Target.On == "value" {
			v = fmtVal(x.Value, x.Unit)
		}
		lines = append(lines, fmt.Sprintf("- #%d %s [%s]: %s, target %s", i+1, x.Name, x.Dataset, v, x.Target.String(x.Unit)))
	}
	if all == 0 {
		return ""
	}
	return fmt.Sprintf("\nIssue 14 targets: %d of %d met in this run.\n\n%s\n", met, all, strings.Join(lines, "\n"))
}

// write saves latest.md/latest.json and timestamped copies into dir.
func (r *report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	md := []byte(r.markdown())
	stamp := r.started.UTC().Format("20060102T150405Z") + "-" + r.Mode
	var paths []string
	for name, data := range map[string][]byte{
		"latest.md": md, "latest.json": js,
		stamp + ".md": md, stamp + ".json": js,
	} {
		p := filepath.Join(dir, name)
		if err := writeFileAtomic(p, data); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}

func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// readLines reads a small text file's lines.
func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

const (
	docBegin = "<!-- benchrun:begin -->"
	docEnd   = "<!-- benchrun:end -->"
)

// pasteInto replaces what lies between the benchrun markers of a Markdown
// file with md (so a document quotes a real run, never typed-in figures).
func pasteInto(path, md string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, docBegin), strings.Index(s, docEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s markers", path, docBegin, docEnd)
	}
	out := s[:i+len(docBegin)] + "\n" + md + "\n" + s[j:]
	return writeFileAtomic(path, []byte(out))
}
