package kafkatest

// Class-data sharing (AppCDS) for the Kafka JVMs: loading and linking Kafka's ~6000 classes is
// most of a broker's start-up CPU. The first broker (or DumpLogSegments) run of a classpath dumps
// a dynamic archive at exit (-XX:ArchiveClassesAtExit, JDK 13+); later runs map it
// (-XX:SharedArchiveFile), which halves start-up CPU. Archives live in
// <module root>/.tools/kafka/cds, keyed by java binary, JVM options and every jar's
// name/size/mtime, so re-resolved jars or another JDK get a fresh archive; a JVM that finds an
// archive unusable just ignores it. Disable with SEGVAULT_KAFKA_CDS=false.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cdsDumpGrace is the extra time Stop allows a broker that dumps an archive at exit (seconds
// of CPU; much more on a loaded machine).
const cdsDumpGrace = 2 * time.Minute

type cdsPlan struct {
	final, tmp string // tmp is set when this run dumps the archive
}

var (
	javaMajorCache sync.Map // java path -> int
	reJavaVersion  = regexp.MustCompile(`version "(1\.)?(\d+)`)
)

// javaMajor returns the feature version of java (8, 11, 17, ...), 0 if unknown.
func javaMajor(java string) int {
	if v, ok := javaMajorCache.Load(java); ok {
		return v.(int)
	}
	out, _ := exec.Command(java, "-version").CombinedOutput()
	n := 0
	if m := reJavaVersion.FindSubmatch(out); m != nil {
		n, _ = strconv.Atoi(string(m[2]))
	}
	javaMajorCache.Store(java, n)
	return n
}

// cdsArgs returns the JVM options to use (or, if create, to create) the archive of this
// classpath, and the plan to pass to commit after the JVM exited. nil, nil when CDS is off or
// unavailable.
func cdsArgs(java, version, dir string, javaOpts []string, create bool) ([]string, *cdsPlan) {
	if v, err := strconv.ParseBool(os.Getenv("SEGVAULT_KAFKA_CDS")); err == nil && !v {
		return nil, nil
	}
	for _, o := range javaOpts {
		if strings.HasPrefix(o, "-Xshare") || strings.Contains(o, "SharedArchiveFile") || strings.Contains(o, "ArchiveClassesAtExit") {
			return nil, nil // the caller manages CDS
		}
	}
	if javaMajor(java) < 13 {
		return nil, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, nil
	}
	cache := filepath.Join(root, ".tools", "kafka", "cds")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, nil
	}
	key, err := cdsKey(java, dir, javaOpts)
	if err != nil {
		return nil, nil
	}
	final := filepath.Join(cache, fmt.Sprintf("%s-%s-%s.jsa", version, filepath.Base(dir), key))
	// JVM warnings to stderr, not into the tools' stdout; none of the hundreds of CDS
	// "Skipping <class>" warnings a dump prints.
	logOpts := []string{"-Xlog:disable", "-Xlog:all=warning:stderr", "-Xlog:cds*=error:stderr"}
	if st, err := os.Stat(final); err == nil && st.Size() > 0 {
		return append(logOpts, "-XX:SharedArchiveFile="+final), nil
	}
	if !create {
		return nil, nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.tmp-%d-%s", final, os.Getpid(), hex.EncodeToString(rnd[:]))
	return append(logOpts, "-XX:ArchiveClassesAtExit="+tmp), &cdsPlan{final: final, tmp: tmp}
}

func cdsKey(java, dir string, javaOpts []string) (string, error) {
	h := sha256.New()
	jp, err := filepath.EvalSymlinks(java)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(jp)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "java %s %d %d\nopts %q\n", jp, st.Size(), st.ModTime().UnixNano(), javaOpts)
	// A dynamic archive is layered on the JDK's base archive and unusable if that changes.
	home := filepath.Dir(filepath.Dir(jp))
	for _, base := range []string{"classes.jsa", "classes_nocoops.jsa"} {
		if st, err := os.Stat(filepath.Join(home, "lib", "server", base)); err == nil {
			fmt.Fprintf(h, "base %s %d %d\n", base, st.Size(), st.ModTime().UnixNano())
		}
	}
	jars, err := filepath.Glob(filepath.Join(dir, "*.jar"))
	if err != nil {
		return "", err
	}
	for _, j := range jars { // Glob sorts
		st, err := os.Stat(j)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "jar %s %d %d\n", j, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// commit publishes a freshly dumped archive if the JVM exited normally, and removes older
// archives of the same version and jar dir (and temp files of JVMs that died long ago).
// Anything else just removes the temp file.
func (p *cdsPlan) commit(exitedNormally bool) {
	if p == nil || p.tmp == "" {
		return
	}
	st, err := os.Stat(p.tmp)
	if !exitedNormally || err != nil || st.Size() == 0 {
		_ = os.Remove(p.tmp)
		return
	}
	if err := os.Rename(p.tmp, p.final); err != nil {
		_ = os.Remove(p.tmp)
		return
	}
	base := filepath.Base(p.final)
	prefix := filepath.Join(filepath.Dir(p.final), base[:strings.LastIndexByte(base, '-')+1]) // <version>-<dir>-
	old, _ := filepath.Glob(prefix + "*.jsa")
	for _, o := range old {
		if o != p.final {
			_ = os.Remove(o)
		}
	}
	stale, _ := filepath.Glob(prefix + "*.jsa.tmp-*")
	for _, o := range stale {
		if st, err := os.Stat(o); err == nil && time.Since(st.ModTime()) > time.Hour {
			_ = os.Remove(o)
		}
	}
}
