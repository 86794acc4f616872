package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a YAML config with the options every valid agent
// config needs, plus extra lines.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "segvault.yaml")
	body := "log-dirs: [" + filepath.Join(dir, "kafka-logs") + "]\n" +
		"bucket: file://" + filepath.Join(dir, "bucket") + "\n" +
		"state-dir: " + filepath.Join(dir, "state") + "\n" + extra
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheckUnknownKey(t *testing.T) {
	p := writeConfig(t, "concurrency: 2\nupload-bandwith: 100\n")
	out, errOut, code := runSegvault(t, "config", "check", "--config", p)
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, `unknown option "upload-bandwith"`) || !strings.Contains(errOut, p) {
		t.Errorf("stderr does not name the file and the key:\n%s", errOut)
	}
	// Options only meaningful on the command line are not config keys.
	p = writeConfig(t, "once: true\n")
	if _, errOut, code := runSegvault(t, "config", "check", "--config", p); code != 2 || !strings.Contains(errOut, `unknown option "once"`) {
		t.Errorf("once in the file: exit %d\n%s", code, errOut)
	}
}

func TestConfigCheckInvalidValue(t *testing.T) {
	p := writeConfig(t, "concurrency: 0\ncompression: brotli\n")
	_, errOut, code := runSegvault(t, "config", "check", "--config", p)
	if code != 2 || !strings.Contains(errOut, "concurrency") || !strings.Contains(errOut, "brotli") {
		t.Fatalf("exit %d, want 2 naming both options:\n%s", code, errOut)
	}
	// A missing file is a usage error too.
	if _, _, code := runSegvault(t, "config", "check", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 2 {
		t.Errorf("missing config file: exit %d, want 2", code)
	}
}

func TestConfigCheckRedactsSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
	t.Setenv("SEGVAULT_S3_SECRET_KEY", secret)
	p := writeConfig(t, "s3-access-key: AKIDEXAMPLE\nzstd-level: 2\ninclude-topics: ['^orders', 'payments']\n")
	out, errOut, code := runSegvault(t, "config", "check", "--config", p)
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, secret) {
		t.Fatalf("the secret key is printed:\n%s", out)
	}
	for _, want := range []string{
		"s3-secret-key: <redacted>\n",
		"s3-access-key: AKIDEXAMPLE\n",
		"zstd-level: 2\n",
		"include-topics:\n    - ^orders\n    - payments\n",
		"state-dir: " + filepath.Join(filepath.Dir(p), "state") + "\n",
		"# configuration OK\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Without a secret nothing is claimed to be redacted.
	t.Setenv("SEGVAULT_S3_SECRET_KEY", "")
	out, _, _ = runSegvault(t, "config", "check", "--config", p)
	if !strings.Contains(out, "s3-secret-key: \"\"\n") {
		t.Errorf("empty secret:\n%s", out)
	}
}

// TestConfigPrecedence shows flag > environment > file for one option.
func TestConfigPrecedence(t *testing.T) {
	p := writeConfig(t, "concurrency: 3\n")
	check := func(want string, args ...string) {
		t.Helper()
		out, errOut, code := runSegvault(t, append([]string{"config", "check", "--config", p}, args...)...)
		if code != 0 || !strings.Contains(out, "\nconcurrency: "+want+"\n") {
			t.Errorf("want concurrency %s: exit %d\n%s\n%s", want, code, out, errOut)
		}
	}
	t.Setenv("SEGVAULT_CONCURRENCY", "")
	os.Unsetenv("SEGVAULT_CONCURRENCY")
	check("3") // the file
	t.Setenv("SEGVAULT_CONCURRENCY", "5")
	check("5")                       // the environment over the file
	check("7", "--concurrency", "7") // the flag over both
	// The config file itself can come from the environment.
	os.Unsetenv("SEGVAULT_CONCURRENCY")
	t.Setenv("SEGVAULT_CONFIG", p)
	out, _, code := runSegvault(t, "config", "check")
	if code != 0 || !strings.Contains(out, "\nconcurrency: 3\n") {
		t.Errorf("SEGVAULT_CONFIG: exit %d\n%s", code, out)
	}
}

func TestConfigCheckHelp(t *testing.T) {
	out, _, code := runSegvault(t, "config", "check", "--help")
	if code != 0 || !strings.Contains(out, "--config") || !strings.Contains(out, "SEGVAULT_S3_SECRET_KEY") || !strings.Contains(out, "redacted") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
