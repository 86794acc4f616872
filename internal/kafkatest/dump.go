package kafkatest

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// DumpLogSegments main classes: Kafka 4.x moved the tool to the kafka-tools artifact (Java);
// up to 3.9 it is the Scala object in kafka_2.13.
var dumpMainClasses = []string{
	"org.apache.kafka.tools.DumpLogSegments",
	"kafka.tools.DumpLogSegments",
}

var mainClassCache sync.Map // jar dir + "\x00" + class list -> mainClassResult

type mainClassResult struct {
	class string
	jar   string
	err   error
}

// findMainClass returns the first of classes present in a jar of dir, and that jar.
func findMainClass(dir string, classes []string) (class, jar string, err error) {
	key := dir + "\x00" + strings.Join(classes, ",")
	if r, ok := mainClassCache.Load(key); ok {
		r := r.(mainClassResult)
		return r.class, r.jar, r.err
	}
	jars, err := filepath.Glob(filepath.Join(dir, "*.jar"))
	if err != nil {
		return "", "", err
	}
	sort.Strings(jars)
	found := make(map[string]string) // class -> jar
	for _, j := range jars {
		zr, err := zip.OpenReader(j)
		if err != nil {
			return "", "", fmt.Errorf("kafkatest: reading %s: %w", j, err)
		}
		for _, f := range zr.File {
			for _, c := range classes {
				if _, ok := found[c]; !ok && f.Name == strings.ReplaceAll(c, ".", "/")+".class" {
					found[c] = j
				}
			}
		}
		zr.Close()
	}
	r := mainClassResult{err: fmt.Errorf("kafkatest: none of %v in %s (resolve it with `make kafka-jars`: mvn -Ptools ...)", classes, dir)}
	for _, c := range classes {
		if j, ok := found[c]; ok {
			r = mainClassResult{class: c, jar: j}
			break
		}
	}
	mainClassCache.Store(key, r)
	return r.class, r.jar, r.err
}

// DumpLogSegments runs Kafka's DumpLogSegments tool from the jars of the given version
// (DefaultVersion when empty) with --deep-iteration --files <files joined by ','> and returns
// its output. err is non-nil if the tool could not run or exited non-zero. Like Start, it skips
// the test (fails it in CI) when the jars or java are missing. Check the output with
// DumpProblems, or use CheckSegments.
//
// The tool runs from ToolsDir(version). For 4.4.0 that is Kafka 4.3.1 (kafka-tools 4.4.0 is not
// on Maven Central); the on-disk format did not change between them.
func DumpLogSegments(t testing.TB, version string, files ...string) (stdout, stderr string, err error) {
	t.Helper()
	return DumpLogSegmentsArgs(t, version, []string{"--deep-iteration"}, files...)
}

// DumpLogSegmentsArgs is DumpLogSegments with other tool arguments instead of
// --deep-iteration (e.g. "--deep-iteration", "--print-data-log", or "--verify-index-only").
func DumpLogSegmentsArgs(t testing.TB, version string, args []string, files ...string) (stdout, stderr string, err error) {
	t.Helper()
	if version == "" {
		version = DefaultVersion
	}
	tools, java := requireKafka(t, version, true)
	if len(files) == 0 {
		return "", "", errors.New("kafkatest: DumpLogSegments: no files")
	}
	abs := make([]string, len(files))
	for i, f := range files {
		if strings.Contains(f, ",") {
			return "", "", fmt.Errorf("kafkatest: DumpLogSegments: file name %q contains ',' (the --files separator)", f)
		}
		a, err := filepath.Abs(f)
		if err != nil {
			return "", "", err
		}
		abs[i] = a
	}
	class, jar, err := findMainClass(tools, dumpMainClasses)
	if err != nil {
		return "", "", err
	}
	cp, err := classpath(tools)
	if err != nil {
		return "", "", err
	}
	cds, plan := cdsArgs(java, version, tools, DefaultJavaOpts, true)
	cmdArgs := slices.Concat(DefaultJavaOpts, cds, loggingOpts("warn"), []string{"-cp", cp, class},
		args, []string{"--files", strings.Join(abs, ",")})
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, cmdArgs...)
	cmd.Dir = os.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	err = cmd.Run()
	plan.commit(err == nil)
	if err != nil {
		err = fmt.Errorf("kafkatest: %s (from %s, for Kafka %s) %s: %w", class, filepath.Base(jar), version, strings.Join(args, " "), err)
	}
	return o.String(), e.String(), err
}

// DumpProblem is one sign of damage in DumpLogSegments output.
type DumpProblem struct {
	File string // the file being dumped when the problem was printed ("" if unknown)
	Kind string // see the Problem* constants
	Line string // the output line
}

func (p DumpProblem) String() string {
	f := p.File
	if f == "" {
		f = "?"
	}
	return fmt.Sprintf("%s: %s: %s", f, p.Kind, p.Line)
}

// DumpProblem kinds.
const (
	ProblemInvalidBatch   = "invalid-batch"           // "isvalid: false" on a batch or record line
	ProblemInvalidBytes   = "invalid-bytes"           // "Found N invalid bytes at the end of ..."
	ProblemNonConsecutive = "non-consecutive-offsets" // "A is followed by B" gaps; normal for compacted topics
	ProblemIndex          = "index-mismatch"          // index/time index verification failures
	ProblemException      = "exception"               // a Java exception or error
	ProblemLogError       = "error"                   // an ERROR log line on stderr
	ProblemNotDumped      = "not-dumped"              // CheckSegments: a file had no "Dumping" line
)

var (
	reDumping       = regexp.MustCompile(`^Dumping (.+)$`)
	reInvalid       = regexp.MustCompile(`\bisvalid: false\b`)
	reInvalidBytes  = regexp.MustCompile(`^Found \d+ invalid bytes at the end of `)
	reNonConsec     = regexp.MustCompile(`^Non-consecutive offsets in (.+)$`)
	reFollowedBy    = regexp.MustCompile(`^\s+(-?\d+) is followed by (-?\d+)\s*$`)
	reIndexProblem  = regexp.MustCompile(`^(Mismatches in|Found timestamp mismatch|Found out of order timestamp|Found offset mismatch|Index .*(out of order|mismatch))`)
	reException     = regexp.MustCompile(`^(Exception in thread |Caused by: |(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b)`)
	reErrorLogLine  = regexp.MustCompile(`^(\S+ )?(\[[^\]]*\] )?ERROR `)
	reRecordOrBatch = regexp.MustCompile(`^(\| |baseOffset: |offset: )`)
)

// DumpProblems scans DumpLogSegments output (as returned by DumpLogSegments) for invalid
// batches or records, trailing invalid bytes, non-consecutive offsets, index mismatches,
// Java exceptions and ERROR log lines. An empty result means the tool saw nothing wrong.
func DumpProblems(stdout, stderr string) []DumpProblem {
	var out []DumpProblem
	scan := func(text string, isStderr bool) {
		file := ""
		gapsIn := "" // file of the "Non-consecutive offsets in" block being read
		for line := range strings.SplitSeq(text, "\n") {
			line = strings.TrimRight(line, "\r")
			if m := reDumping.FindStringSubmatch(line); m != nil {
				file, gapsIn = m[1], ""
				continue
			}
			if m := reNonConsec.FindStringSubmatch(line); m != nil {
				gapsIn = m[1]
				continue
			}
			if gapsIn != "" {
				if m := reFollowedBy.FindStringSubmatch(line); m != nil {
					// The Java DumpLogSegments (4.x) starts from lastOffset -1 and so reports
					// "-1 is followed by <base offset>" for every segment not starting at 0.
					if m[1] != "-1" {
						out = append(out, DumpProblem{File: gapsIn, Kind: ProblemNonConsecutive, Line: strings.TrimSpace(line)})
					}
					continue
				}
				gapsIn = ""
			}
			kind := ""
			switch {
			case reInvalid.MatchString(line):
				kind = ProblemInvalidBatch
			case reRecordOrBatch.MatchString(line):
				// Record/batch lines can carry arbitrary header keys; only isvalid matters.
			case reInvalidBytes.MatchString(line):
				kind = ProblemInvalidBytes
			case reIndexProblem.MatchString(line):
				kind = ProblemIndex
			case reException.MatchString(strings.TrimSpace(line)):
				kind = ProblemException
			case isStderr && reErrorLogLine.MatchString(line):
				kind = ProblemLogError
			}
			if kind != "" {
				out = append(out, DumpProblem{File: file, Kind: kind, Line: strings.TrimSpace(line)})
			}
		}
	}
	scan(stdout, false)
	scan(stderr, true)
	return out
}

// DumpedFiles returns the files named by the "Dumping <file>" lines of DumpLogSegments output.
func DumpedFiles(stdout string) []string {
	var files []string
	for line := range strings.SplitSeq(stdout, "\n") {
		if m := reDumping.FindStringSubmatch(strings.TrimRight(line, "\r")); m != nil {
			files = append(files, m[1])
		}
	}
	return files
}

// CheckSegments runs DumpLogSegments --deep-iteration on files and returns every problem:
// those of DumpProblems, a failed run, and files the tool did not dump. allow lists problem
// kinds to ignore (e.g. ProblemNonConsecutive for compacted topics). Problem files are absolute.
func CheckSegments(t testing.TB, version string, files []string, allow ...string) []DumpProblem {
	t.Helper()
	probs, _ := checkSegments(t, version, files, allow)
	return probs
}

// checkSegments is CheckSegments that also returns the tool's stdout.
func checkSegments(t testing.TB, version string, files, allow []string) ([]DumpProblem, string) {
	t.Helper()
	stdout, stderr, err := DumpLogSegments(t, version, files...)
	var probs []DumpProblem
	if err != nil {
		probs = append(probs, DumpProblem{Kind: ProblemException, Line: fmt.Sprintf("%v; stderr: %s", err, strings.TrimSpace(stderr))})
	}
	for _, p := range DumpProblems(stdout, stderr) {
		if !slices.Contains(allow, p.Kind) {
			probs = append(probs, p)
		}
	}
	dumped := DumpedFiles(stdout)
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		if !slices.Contains(dumped, abs) {
			probs = append(probs, DumpProblem{File: abs, Kind: ProblemNotDumped, Line: "no \"Dumping\" line for this file"})
		}
	}
	return probs, stdout
}
