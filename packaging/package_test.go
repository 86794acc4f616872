// Package packaging holds the nfpm configuration, the systemd unit, the
// default configuration and the maintainer scripts of segvault's .deb and
// .rpm. Its test builds the packages once with `make package` and inspects
// what they contain; packaging/test-install.sh (`make test-install`)
// installs and runs them.
package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// --- building once -------------------------------------------------------------

type built struct {
	root    string            // repository root
	version string            // package version (without the release)
	debs    map[string]string // Go arch -> path
	rpms    map[string]string // Go arch -> path
	bin     string            // the packaged binary for this machine (extracted from its .deb)
	err     error
}

var (
	buildOnce sync.Once
	pkgs      built
)

var rpmArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// packages runs `make package` once and returns what it built.
func packages(t *testing.T) *built {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the packages (make package): skipped with -short")
	}
	buildOnce.Do(func() { pkgs = makePackages() })
	if pkgs.err != nil {
		t.Fatal(pkgs.err)
	}
	return &pkgs
}

func makePackages() built {
	b := built{debs: map[string]string{}, rpms: map[string]string{}}
	root, err := filepath.Abs("..")
	if err != nil {
		return built{err: err}
	}
	b.root = root
	cmd := exec.Command("make", "package")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return built{err: fmt.Errorf("make package: %v\n%s", err, tail(out, 40))}
	}
	list, err := os.ReadFile(filepath.Join(root, "dist", "PACKAGES"))
	if err != nil {
		return built{err: err}
	}
	debRe := regexp.MustCompile(`^segvault_(.+)_(amd64|arm64)\.deb$`)
	rpmRe := regexp.MustCompile(`^segvault-(.+)\.(x86_64|aarch64)\.rpm$`)
	for _, name := range strings.Fields(string(list)) {
		p := filepath.Join(root, "dist", name)
		if m := debRe.FindStringSubmatch(name); m != nil {
			b.debs[m[2]] = p
			b.version = m[1]
		} else if m := rpmRe.FindStringSubmatch(name); m != nil {
			for goarch, ra := range rpmArch {
				if ra == m[2] {
					b.rpms[goarch] = p
				}
			}
		} else {
			return built{err: fmt.Errorf("dist/PACKAGES: unexpected %q", name)}
		}
	}
	for _, a := range []string{"amd64", "arm64"} {
		if b.debs[a] == "" || b.rpms[a] == "" {
			return built{err: fmt.Errorf("dist/PACKAGES lacks the %s packages:\n%s", a, list)}
		}
	}
	if deb := b.debs[runtime.GOARCH]; deb != "" {
		dir, err := os.MkdirTemp("", "segvault-package-test")
		if err != nil {
			return built{err: err}
		}
		// Left for the OS to clean: shared by every test of the run.
		if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
			return built{err: fmt.Errorf("dpkg-deb -x: %v: %s", err, out)}
		}
		b.bin = filepath.Join(dir, "usr", "bin", "segvault")
	}
	return b
}

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, ee.Stderr)
		}
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// needTool skips when a tool is missing, except in CI (CI=true), where the
// Makefile must have installed it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s): the Makefile must install it for CI", name, pkg)
		}
		t.Skipf("%s not found (apt-get install %s)", name, pkg)
	}
	return p
}

// --- what the packages must hold ------------------------------------------------

type want struct {
	mode       os.FileMode // permission bits
	owner, grp string
	dir        bool
	conffile   bool
	debOnly    bool
	rpmOnly    bool
	rpmPath    string // when the .rpm installs it elsewhere
	rpmDoc     bool
	rpmLicense bool
	nonEmpty   bool // regular file that must not be empty
}

var contents = map[string]want{
	"/usr/bin/segvault":                               {mode: 0o755, owner: "root", grp: "root", nonEmpty: true},
	"/lib/systemd/system/segvault.service":            {mode: 0o644, owner: "root", grp: "root", rpmPath: "/usr/lib/systemd/system/segvault.service"},
	"/etc/segvault":                                   {mode: 0o755, owner: "root", grp: "root", dir: true},
	"/etc/segvault/segvault.yaml":                     {mode: 0o640, owner: "root", grp: "segvault", conffile: true},
	"/etc/default/segvault":                           {mode: 0o640, owner: "root", grp: "segvault", conffile: true, rpmPath: "/etc/sysconfig/segvault"},
	"/var/lib/segvault":                               {mode: 0o750, owner: "segvault", grp: "segvault", dir: true},
	"/usr/share/man/man1/segvault.1.gz":               {mode: 0o644, owner: "root", grp: "root", rpmDoc: true},
	"/usr/share/bash-completion/completions/segvault": {mode: 0o644, owner: "root", grp: "root"},
	"/usr/share/zsh/vendor-completions/_segvault":     {mode: 0o644, owner: "root", grp: "root"},
	"/usr/share/doc/segvault/README.md":               {mode: 0o644, owner: "root", grp: "root", rpmDoc: true},
	"/usr/share/doc/segvault/OPERATIONS.md":           {mode: 0o644, owner: "root", grp: "root", rpmDoc: true},
	"/usr/share/doc/segvault/copyright":               {mode: 0o644, owner: "root", grp: "root", rpmPath: "/usr/share/licenses/segvault/copyright", rpmLicense: true},
	"/usr/share/doc/segvault/changelog.Debian.gz":     {mode: 0o644, owner: "root", grp: "root", debOnly: true},
	"/usr/share/lintian/overrides/segvault":           {mode: 0o644, owner: "root", grp: "root", debOnly: true},
}

// --- .deb ---------------------------------------------------------------------------

type debEntry struct {
	mode       string // ls-style: drwxr-xr-x
	owner, grp string
	size       int64
}

func debContents(t *testing.T, deb string) map[string]debEntry {
	t.Helper()
	out := run(t, "dpkg-deb", "--contents", deb)
	m := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: %q", line)
		}
		og := strings.SplitN(f[1], "/", 2)
		size, _ := strconv.ParseInt(f[2], 10, 64)
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		m[p] = debEntry{mode: f[0], owner: og[0], grp: og[1], size: size}
	}
	return m
}

func lsMode(dir bool, perm os.FileMode) string {
	mode := perm
	if dir {
		mode |= os.ModeDir
	}
	s := mode.String() // drwxr-x--- or -rw-r-----
	return s
}

func TestDeb(t *testing.T) {
	b := packages(t)
	for arch, deb := range b.debs {
		t.Run(arch, func(t *testing.T) {
			fields := map[string]string{}
			for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Depends", "Homepage"} {
				fields[f] = strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f))
			}
			if fields["Package"] != "segvault" || fields["Architecture"] != arch || fields["Version"] != b.version+"-1" {
				t.Errorf("control: %v", fields)
			}
			if fields["Depends"] != "" {
				t.Errorf("Depends: %q: the binary is static and the scripts use only essential tools", fields["Depends"])
			}
			if fields["Maintainer"] == "" || fields["Section"] != "admin" || fields["Priority"] != "optional" {
				t.Errorf("control: %v", fields)
			}

			files := debContents(t, deb)
			for p, w := range contents {
				if w.rpmOnly {
					continue
				}
				e, ok := files[p]
				if !ok {
					t.Errorf("%s: missing", p)
					continue
				}
				if got, wantMode := e.mode, lsMode(w.dir, w.mode); got != wantMode || e.owner != w.owner || e.grp != w.grp {
					t.Errorf("%s: %s %s/%s, want %s %s/%s", p, got, e.owner, e.grp, wantMode, w.owner, w.grp)
				}
				if w.nonEmpty && e.size == 0 {
					t.Errorf("%s: empty", p)
				}
			}
			for p, e := range files {
				if _, ok := contents[p]; ok {
					continue
				}
				// Anything else is a parent directory, root-owned 0755.
				if e.mode != "drwxr-xr-x" || e.owner != "root" || e.grp != "root" {
					t.Errorf("unexpected %s %s %s/%s", p, e.mode, e.owner, e.grp)
				}
			}

			dir := t.TempDir()
			run(t, "dpkg-deb", "--control", deb, dir)
			conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
			if err != nil {
				t.Fatal(err)
			}
			var got, exp []string
			got = strings.Fields(string(conffiles))
			for p, w := range contents {
				if w.conffile {
					exp = append(exp, p)
				}
			}
			sort.Strings(got)
			sort.Strings(exp)
			if strings.Join(got, " ") != strings.Join(exp, " ") {
				t.Errorf("conffiles %v, want %v", got, exp)
			}
			for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
				p := filepath.Join(dir, s)
				st, err := os.Stat(p)
				if err != nil {
					t.Errorf("maintainer script %s: %v", s, err)
					continue
				}
				if st.Mode().Perm() != 0o755 {
					t.Errorf("%s: mode %v", s, st.Mode())
				}
				checkScript(t, p)
			}
			postinst, _ := os.ReadFile(filepath.Join(dir, "postinst"))
			for _, s := range []string{"systemctl enable segvault.service", "try-restart", "[ -d /run/systemd/system ]"} {
				if !bytes.Contains(postinst, []byte(s)) {
					t.Errorf("postinst lacks %q", s)
				}
			}
			if regexp.MustCompile(`(?m)^\s*systemctl\s+(--\S+\s+)*start\b`).Match(postinst) {
				t.Error("postinst starts the service: it must only enable it (not configured yet)")
			}

			// The binary: right architecture, statically linked, our version.
			bin := extractFromDeb(t, deb, "./usr/bin/segvault")
			checkELF(t, bin, arch)
			if arch == runtime.GOARCH {
				if out := run(t, bin, "--version"); strings.TrimSpace(out) != "segvault version "+b.version {
					t.Errorf("--version: %q, want %q", out, b.version)
				}
			}
		})
	}
}

func extractFromDeb(t *testing.T, deb, member string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "$3"`, "sh", deb, dir, member)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v: %s", member, err, out)
	}
	return filepath.Join(dir, member)
}

func checkELF(t *testing.T, path, arch string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has an interpreter: not statically linked (CGO_ENABLED=0)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: links %v", path, libs)
	}
}

func checkScript(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v: %s", filepath.Base(path), err, out)
	}
}

// --- .rpm (read with a minimal header parser: no rpm tool needed) -------------

// RPM header tags and file flags used here (rpm's lib/rpmtag.h, rpmfiles.h).
const (
	tagName          = 1000
	tagVersion       = 1001
	tagRelease       = 1002
	tagLicense       = 1014
	tagArch          = 1022
	tagPrein         = 1023
	tagPostin        = 1024
	tagPreun         = 1025
	tagPostun        = 1026
	tagFileSizes     = 1028
	tagFileModes     = 1030
	tagFileFlags     = 1037
	tagFileUserName  = 1039
	tagFileGroupName = 1040
	tagDirIndexes    = 1116
	tagBaseNames     = 1117
	tagDirNames      = 1118
	tagPayloadComp   = 1125

	fileConfig    = 1 << 0
	fileDoc       = 1 << 1
	fileNoReplace = 1 << 4
	fileLicense   = 1 << 7
)

type rpmHeader map[uint32]any // tag -> string, []string, []int64

type rpmFile struct {
	mode        os.FileMode
	dir         bool
	user, group string
	flags       int64
	size        int64
}

func readRPM(t *testing.T, path string) (rpmHeader, map[string]rpmFile) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 96 || !bytes.Equal(data[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("%s: not an rpm (lead)", path)
	}
	off := 96
	_, n, err := parseHeader(data[off:])
	if err != nil {
		t.Fatalf("%s: signature header: %v", path, err)
	}
	off += n
	off += (8 - off%8) % 8 // the signature header is padded to 8 bytes
	h, _, err := parseHeader(data[off:])
	if err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	base, _ := h[tagBaseNames].([]string)
	dirs, _ := h[tagDirNames].([]string)
	idx, _ := h[tagDirIndexes].([]int64)
	modes, _ := h[tagFileModes].([]int64)
	flags, _ := h[tagFileFlags].([]int64)
	users, _ := h[tagFileUserName].([]string)
	groups, _ := h[tagFileGroupName].([]string)
	sizes, _ := h[tagFileSizes].([]int64)
	files := map[string]rpmFile{}
	for i := range base {
		if i >= len(idx) || i >= len(modes) || i >= len(flags) || i >= len(users) || i >= len(groups) || i >= len(sizes) || int(idx[i]) >= len(dirs) {
			t.Fatalf("%s: inconsistent file tags", path)
		}
		m := uint16(modes[i])
		files[dirs[idx[i]]+base[i]] = rpmFile{mode: os.FileMode(m & 0o7777), dir: m&0o170000 == 0o040000,
			user: users[i], group: groups[i], flags: flags[i], size: sizes[i]}
	}
	return h, files
}

// parseHeader reads one header structure: magic 8e ad e8 01, 4 reserved
// bytes, index count, data size, the index entries and the data store.
func parseHeader(b []byte) (rpmHeader, int, error) {
	if len(b) < 16 || !bytes.Equal(b[:4], []byte{0x8e, 0xad, 0xe8, 0x01}) {
		return nil, 0, errors.New("bad header magic")
	}
	nindex := int(binary.BigEndian.Uint32(b[8:]))
	hsize := int(binary.BigEndian.Uint32(b[12:]))
	total := 16 + nindex*16 + hsize
	if nindex > 1<<16 || hsize > 1<<28 || len(b) < total {
		return nil, 0, errors.New("truncated header")
	}
	store := b[16+nindex*16 : total]
	h := rpmHeader{}
	for i := 0; i < nindex; i++ {
		e := b[16+i*16:]
		tag, typ := binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
		o, count := int(binary.BigEndian.Uint32(e[8:])), int(binary.BigEndian.Uint32(e[12:]))
		if o < 0 || o > len(store) {
			return nil, 0, fmt.Errorf("tag %d: offset out of range", tag)
		}
		d := store[o:]
		switch typ {
		case 3, 4, 5: // int16, int32, int64
			w := map[uint32]int{3: 2, 4: 4, 5: 8}[typ]
			if count*w > len(d) {
				return nil, 0, fmt.Errorf("tag %d: short data", tag)
			}
			v := make([]int64, count)
			for j := range v {
				switch w {
				case 2:
					v[j] = int64(binary.BigEndian.Uint16(d[j*2:]))
				case 4:
					v[j] = int64(int32(binary.BigEndian.Uint32(d[j*4:])))
				case 8:
					v[j] = int64(binary.BigEndian.Uint64(d[j*8:]))
				}
			}
			h[tag] = v
		case 6, 8, 9: // string, string array, i18n string
			var v []string
			for j := 0; j < count; j++ {
				k := bytes.IndexByte(d, 0)
				if k < 0 {
					return nil, 0, fmt.Errorf("tag %d: unterminated string", tag)
				}
				v = append(v, string(d[:k]))
				d = d[k+1:]
			}
			if typ == 6 && len(v) == 1 {
				h[tag] = v[0]
			} else {
				h[tag] = v
			}
		}
	}
	return h, total, nil
}

func TestRPM(t *testing.T) {
	b := packages(t)
	for arch, path := range b.rpms {
		t.Run(arch, func(t *testing.T) {
			h, files := readRPM(t, path)
			str := func(tag uint32) string {
				if s, ok := h[tag].(string); ok {
					return s
				}
				if s, ok := h[tag].([]string); ok && len(s) > 0 {
					return s[0]
				}
				return ""
			}
			if str(tagName) != "segvault" || str(tagVersion) != b.version || str(tagRelease) != "1" || str(tagArch) != rpmArch[arch] {
				t.Errorf("NEVRA: %s-%s-%s.%s", str(tagName), str(tagVersion), str(tagRelease), str(tagArch))
			}
			if c := str(tagPayloadComp); c != "xz" {
				t.Errorf("payload compressor %q, want xz (readable by every rpm since RHEL 7)", c)
			}
			if str(tagLicense) == "" {
				t.Error("no License")
			}
			for p, w := range contents {
				if w.debOnly {
					continue
				}
				rp := p
				if w.rpmPath != "" {
					rp = w.rpmPath
				}
				f, ok := files[rp]
				if !ok {
					t.Errorf("%s: missing", rp)
					continue
				}
				if f.mode != w.mode || f.dir != w.dir || f.user != w.owner || f.group != w.grp {
					t.Errorf("%s: %v dir=%v %s:%s, want %v dir=%v %s:%s", rp, f.mode, f.dir, f.user, f.group, w.mode, w.dir, w.owner, w.grp)
				}
				if w.conffile && f.flags&(fileConfig|fileNoReplace) != fileConfig|fileNoReplace {
					t.Errorf("%s: not %%config(noreplace) (flags %#x)", rp, f.flags)
				}
				if !w.conffile && f.flags&fileConfig != 0 {
					t.Errorf("%s: unexpectedly %%config", rp)
				}
				if w.rpmDoc != (f.flags&fileDoc != 0) || w.rpmLicense != (f.flags&fileLicense != 0) {
					t.Errorf("%s: flags %#x (doc %v, license %v wanted)", rp, f.flags, w.rpmDoc, w.rpmLicense)
				}
			}
			for p := range files {
				known := false
				for dp, w := range contents {
					if p == dp && w.rpmPath == "" || p == w.rpmPath {
						known = true
					}
				}
				if !known {
					t.Errorf("unexpected file %s (an rpm must not own shared directories)", p)
				}
			}
			// Same binary as the .deb of this architecture.
			debFiles := debContents(t, b.debs[arch])
			if got, want := files["/usr/bin/segvault"].size, debFiles["/usr/bin/segvault"].size; got != want {
				t.Errorf("/usr/bin/segvault: %d bytes in the rpm, %d in the deb", got, want)
			}
			for tag, name := range map[uint32]string{tagPrein: "pre", tagPostin: "post", tagPreun: "preun", tagPostun: "postun"} {
				s := str(tag)
				if s == "" {
					t.Errorf("%%%s scriptlet missing", name)
					continue
				}
				p := filepath.Join(t.TempDir(), name)
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
				checkScript(t, p)
			}
			if !strings.Contains(str(tagPreun), `"$1" -eq 0`) || !strings.Contains(str(tagPostun), "try-restart") {
				t.Error("the preun scriptlet must act on erase only ($1 = 0), postun must try-restart on upgrade")
			}

			if _, err := exec.LookPath("rpm"); err == nil { // cross-check with rpm itself when it is there
				out := run(t, "rpm", "-qp", "--nosignature", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}", path)
				if want := "segvault-" + b.version + "-1." + rpmArch[arch]; out != want {
					t.Errorf("rpm -qp: %q, want %q", out, want)
				}
				cfg := strings.Fields(run(t, "rpm", "-qcp", "--nosignature", path))
				if strings.Join(cfg, " ") != "/etc/segvault/segvault.yaml /etc/sysconfig/segvault" {
					t.Errorf("rpm -qcp: %v", cfg)
				}
			}
		})
	}
}

// --- the unit -------------------------------------------------------------------------

func TestUnitVerify(t *testing.T) {
	b := packages(t)
	needTool(t, "systemd-analyze", "systemd")
	unit := extractFromDeb(t, b.debs[runtime.GOARCH], "./lib/systemd/system/segvault.service")
	out, _ := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput()
	// The unit is checked outside its package, so /usr/bin/segvault is
	// absent here (packaging/test-install.sh verifies it installed).
	_, statErr := os.Stat("/usr/bin/segvault")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || statErr != nil && strings.Contains(line, "Command /usr/bin/segvault is not executable") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
}

func TestUnitSecurity(t *testing.T) {
	b := packages(t)
	needTool(t, "systemd-analyze", "systemd")
	unit := extractFromDeb(t, b.debs[runtime.GOARCH], "./lib/systemd/system/segvault.service")
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for segvault\.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, rating := string(m[1]), string(m[2])
	t.Logf("systemd-analyze security: exposure %s %s", score, rating)
	switch rating {
	case "OK", "SAFE", "PERFECT":
	default:
		t.Errorf("exposure %s %s: the unit must rate OK or better", score, rating)
	}
	// The hardening the service depends on, verbatim.
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{
		"User=segvault", "Group=segvault", "SupplementaryGroups=kafka", "ProtectSystem=strict", "ReadWritePaths=/var/lib/segvault",
		"StateDirectory=segvault", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=",
		"AmbientCapabilities=", "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
		"SystemCallArchitectures=native", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes",
		"UMask=0027", "Nice=10", "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch", "Restart=on-failure",
		"ExecReload=/bin/kill -HUP $MAINPID", "EnvironmentFile=-/etc/default/segvault", "EnvironmentFile=-/etc/sysconfig/segvault",
		"ExecStart=/usr/bin/segvault agent --config /etc/segvault/segvault.yaml",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(l) + `$`).Match(text) {
			t.Errorf("unit lacks the line %q", l)
		}
	}
	// TimeoutStopSec must leave the agent its whole drain-timeout.
	stop := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindSubmatch(text)
	if stop == nil {
		t.Fatal("no TimeoutStopSec=<n>s")
	}
	if n, _ := strconv.Atoi(string(stop[1])); n <= 60 {
		t.Errorf("TimeoutStopSec=%ds does not exceed the default drain-timeout (60s)", n)
	}
}

// --- linters ------------------------------------------------------------------------

func TestLintian(t *testing.T) {
	b := packages(t)
	needTool(t, "lintian", "lintian")
	for arch, deb := range b.debs {
		t.Run(arch, func(t *testing.T) {
			cmd := exec.Command("lintian", "--pedantic", "--display-info", "--display-experimental",
				"--fail-on", "error,warning", "--tag-display-limit", "0", deb)
			out, err := cmd.CombinedOutput()
			var issues []string
			for _, l := range strings.Split(string(out), "\n") {
				// Every hint counts, info and pedantic ones too, except the
				// override for typos in the strings of linked Go modules going
				// unused: which strings an architecture's binary holds varies.
				if regexp.MustCompile(`^[EWIPX]: `).MatchString(l) && !strings.Contains(l, "unused-override spelling-error-in-binary") {
					issues = append(issues, l)
				}
			}
			if err != nil || len(issues) > 0 {
				t.Errorf("lintian: %v\n%s", err, out)
			}
		})
	}
}

func TestRpmlint(t *testing.T) {
	b := packages(t)
	needTool(t, "rpmlint", "rpmlint")
	needTool(t, "rpm2cpio", "rpm2cpio")
	// rpmlint extracts with `rpm2cpio | cpio -id`; nfpm writes absolute paths
	// into the payload, which GNU cpio would extract over / . A cpio first in
	// PATH that keeps everything under rpmlint's temporary directory.
	wrap := t.TempDir()
	script := "#!/bin/sh\nexec /usr/bin/cpio --no-absolute-filenames \"$@\"\n"
	if err := os.WriteFile(filepath.Join(wrap, "cpio"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for arch, path := range b.rpms {
		t.Run(arch, func(t *testing.T) {
			cmd := exec.Command("rpmlint", "-c", filepath.Join(b.root, "packaging", "rpmlint.toml"), path)
			cmd.Env = append(os.Environ(), "PATH="+wrap+string(os.PathListSeparator)+os.Getenv("PATH"))
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if err != nil || !regexp.MustCompile(`\b0 errors, 0 warnings\b`).Match(out) {
				t.Errorf("rpmlint: %v\n%s", err, out)
			}
		})
	}
}

// --- configuration, man page, completions -------------------------------------------------------

// configKeys returns the keys of packaging/segvault.yaml, commented out or
// not, with the values of the commented ones uncommented into a YAML document.
func configKeys(t *testing.T, path string) (keys map[string]bool, uncommented string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys = map[string]bool{}
	key := regexp.MustCompile(`^(?:# )?([a-z0-9]+(?:-[a-z0-9]+)*):(?: (.*))?$`)
	item := regexp.MustCompile(`^#?(\s+- .*)$`)
	var doc strings.Builder
	inList := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if m := key.FindStringSubmatch(l); m != nil && m[1] != "file" && !keys[m[1]] {
			keys[m[1]] = true
			fmt.Fprintf(&doc, "%s: %s\n", m[1], m[2])
			inList = m[2] == ""
			continue
		}
		if m := item.FindStringSubmatch(l); m != nil && inList {
			fmt.Fprintln(&doc, m[1])
			continue
		}
		inList = false
	}
	return keys, doc.String()
}

func TestDefaultConfig(t *testing.T) {
	b := packages(t)
	if b.bin == "" {
		t.Skipf("no package for %s", runtime.GOARCH)
	}
	cfg := filepath.Join(b.root, "packaging", "segvault.yaml")
	keys, doc := configKeys(t, cfg)

	// Every key is an option of `segvault agent`, and every option is there.
	help := run(t, b.bin, "agent", "--help")
	opts := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`).FindAllStringSubmatch(help, -1) {
		opts[m[1]] = true
	}
	delete(opts, "help")
	delete(opts, "config") // the file itself
	delete(opts, "once")   // not for the service
	// The secret goes in the environment file, never in the YAML.
	delete(opts, "s3-secret-key")
	if env, err := os.ReadFile(filepath.Join(b.root, "packaging", "segvault.env")); err != nil || !bytes.Contains(env, []byte("SEGVAULT_S3_SECRET_KEY=")) {
		t.Errorf("segvault.env does not offer SEGVAULT_S3_SECRET_KEY (%v)", err)
	}
	for o := range opts {
		if !keys[o] {
			t.Errorf("segvault.yaml does not document --%s", o)
		}
	}
	for k := range keys {
		if !opts[k] {
			t.Errorf("segvault.yaml has %q, not an option of segvault agent", k)
		}
	}
	if keys["s3-secret-key"] {
		t.Error("segvault.yaml mentions s3-secret-key: secrets belong in the environment file")
	}

	// As shipped: rejected, naming the bucket (the service is not started
	// until it is configured).
	cmd := exec.Command(b.bin, "config", "check", "--config", cfg)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "bucket") {
		t.Errorf("config check of the shipped config: %v, want exit status 2 naming the bucket:\n%s", err, out)
	}
	// Every commented-out value, uncommented, with a bucket: valid.
	full := filepath.Join(t.TempDir(), "full.yaml")
	doc = strings.Replace(doc, `bucket: ""`, "bucket: s3://example", 1)
	doc = regexp.MustCompile(`(?m)^encryption-key-file: .*\n`).ReplaceAllString(doc, "")
	if err := os.WriteFile(full, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(b.bin, "config", "check", "--config", full).CombinedOutput(); err != nil {
		t.Errorf("config check with every documented value: %v\n%s\n%s", err, out, doc)
	}
}

func TestManPageAndCompletions(t *testing.T) {
	b := packages(t)
	deb := b.debs[runtime.GOARCH]
	if deb == "" {
		t.Skipf("no package for %s", runtime.GOARCH)
	}
	gz, err := os.ReadFile(extractFromDeb(t, deb, "./usr/share/man/man1/segvault.1.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	man, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{".TH segvault 1", ".SH NAME", ".SH COMMANDS", ".SH FILES", ".SH ENVIRONMENT", "agent", "restore", "verify", "/etc/segvault/segvault.yaml"} {
		if !bytes.Contains(man, []byte(s)) {
			t.Errorf("man page lacks %q", s)
		}
	}
	for _, hidden := range []string{"gen-man", "completion bash"} {
		if bytes.Contains(man, []byte(hidden)) {
			t.Errorf("man page shows the hidden command %q", hidden)
		}
	}
	bash := extractFromDeb(t, deb, "./usr/share/bash-completion/completions/segvault")
	if out := run(t, "bash", "-c", `source "$1" && complete -p segvault`, "bash", bash); !strings.Contains(out, "_segvault_completion segvault") {
		t.Errorf("bash completion: %q", out)
	}
	zsh, err := os.ReadFile(extractFromDeb(t, deb, "./usr/share/zsh/vendor-completions/_segvault"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(zsh, []byte("#compdef segvault\n")) {
		t.Errorf("zsh completion does not start with #compdef segvault")
	}
	// The completions ask the binary: it must answer.
	if out := run(t, b.bin, "agent", "--s", "--generate-bash-completion"); !strings.Contains(out, "--state-dir") {
		t.Errorf("segvault agent --s --generate-bash-completion: %q", out)
	}
}

// --- version normalisation (no build) --------------------------------------------------

func TestPackageVersion(t *testing.T) {
	for raw, want := range map[string]string{
		"1.2.3":                  "1.2.3",
		"v1.2.3":                 "1.2.3",
		"1.2.3-rc1":              "1.2.3~rc1",
		"1.2.3-4-gabc1234":       "1.2.3+git4.abc1234",
		"1.2.3-rc1-4-gabc1234":   "1.2.3~rc1+git4.abc1234",
		"1.2.3-dirty":            "1.2.3+dirty",
		"1.2.3-4-gabc1234-dirty": "1.2.3+git4.abc1234.dirty",
		"0.0.0-dev":              "0.0.0~dev",
		"feature/x_y":            "0.0.0~feature.x.y",
	} {
		out, err := exec.Command("bash", "build.sh", "--print-version", raw).Output()
		if err != nil {
			t.Fatalf("build.sh --print-version %s: %v", raw, err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s -> %s, want %s", raw, got, want)
		}
		if err == nil && want != "" {
			if cmp := exec.Command("dpkg", "--compare-versions", want, "gt", "0.0.0~~old"); cmp.Run() != nil {
				t.Errorf("%s does not sort after the test-install baseline 0.0.0~~old", want)
			}
		}
	}
	// An untagged commit: 0.0.0~git<sha>, even when its abbreviation is all digits.
	if sha, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		s := strings.TrimSpace(string(sha))
		out, _ := exec.Command("bash", "build.sh", "--print-version", s).Output()
		if got := strings.TrimSpace(string(out)); got != "0.0.0~git"+s {
			t.Errorf("%s -> %s, want 0.0.0~git%s", s, got, s)
		}
	}
}

// --- monitoring: every metric named in the rules, the dashboard and
// OPERATIONS.md exists in agent/metrics.go, and each one is documented ---------

func agentMetrics(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "agent", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, x := range regexp.MustCompile(`\b(c|g)\("([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		m["segvault_agent_"+x[2]] = map[string]string{"c": "counter", "g": "gauge"}[x[1]]
	}
	for _, x := range regexp.MustCompile(`Name:\s*"([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		if _, ok := m["segvault_agent_"+x[1]]; !ok {
			m["segvault_agent_"+x[1]] = "vec or histogram"
		}
	}
	if len(m) < 10 {
		t.Fatalf("found only %d metrics in agent/metrics.go: has its layout changed?", len(m))
	}
	return m
}

func TestMonitoring(t *testing.T) {
	metrics := agentMetrics(t)
	used := regexp.MustCompile(`segvault_agent_[a-z_]+`)
	check := func(file string) map[string]bool {
		data, err := os.ReadFile(filepath.Join("..", "docs", file))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, name := range used.FindAllString(string(data), -1) {
			base := name
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				if _, ok := metrics[base]; !ok {
					base = strings.TrimSuffix(base, suf)
				}
			}
			if _, ok := metrics[base]; !ok {
				t.Errorf("%s: %s is not a metric of agent/metrics.go", file, name)
			}
			seen[base] = true
		}
		return seen
	}
	check("monitoring/segvault-alerts.yml")
	dash := check("monitoring/segvault-dashboard.json")
	doc := check("OPERATIONS.md")
	for name := range metrics {
		if !doc[name] {
			t.Errorf("OPERATIONS.md does not document %s", name)
		}
		if !dash[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}

	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile(filepath.Join("..", "docs", "monitoring", "segvault-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Errorf("dashboard: title %q uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err = os.ReadFile(filepath.Join("..", "docs", "monitoring", "segvault-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("alerts: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["runbook"] == "" {
				t.Errorf("alert %s: needs expr, severity, summary and runbook", r.Alert)
			}
		}
	}
	for _, a := range []string{"SegvaultDown", "SegvaultNotReady", "SegvaultNoRecentSuccess", "SegvaultArchiveLagGrowing",
		"SegvaultArchiveLagHigh", "SegvaultSegmentsLost", "SegvaultCorruptSegments", "SegvaultConflicts", "SegvaultFailuresHigh"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}

	// promtool (the Makefile extracts it from Debian's prometheus package
	// into .tools/bin and exports SEGVAULT_PROMTOOL_BIN): syntax and the
	// rules' unit tests. In CI a missing promtool is a failure.
	promtool := os.Getenv("SEGVAULT_PROMTOOL_BIN")
	if promtool == "" {
		promtool, _ = exec.LookPath("promtool")
	}
	if _, err := os.Stat(promtool); promtool == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found (SEGVAULT_PROMTOOL_BIN=%q): run make tools", os.Getenv("SEGVAULT_PROMTOOL_BIN"))
		}
		t.Log("promtool not installed: rule syntax and rule tests not run (make tools installs it)")
		return
	}
	dir := filepath.Join("..", "docs", "monitoring")
	for _, args := range [][]string{{"check", "rules", "segvault-alerts.yml"}, {"test", "rules", "segvault-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
