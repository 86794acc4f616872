package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestH10ConfigCheckTLSScheme: `config check` refuses (exit 2) the same
// contradictory S3 TLS settings the agent refuses: an http:// endpoint
// without s3-insecure, an https:// one with it, whether they come from the
// config file or the environment. It must never say "configuration OK" for
// a file the agent then refuses.
func TestH10ConfigCheckTLSScheme(t *testing.T) {
	logDir := t.TempDir()
	os.WriteFile(filepath.Join(logDir, "meta.properties"), []byte("version=1\nnode.id=1\ncluster.id=h10h10h10h10h10h10h10A\n"), 0o644)
	for name, body := range map[string]string{
		"http without insecure": "bucket: s3://h10-bucket/p\ns3-endpoint: http://127.0.0.1:9\n",
		"http insecure false":   "bucket: s3://h10-bucket/p\ns3-endpoint: http://127.0.0.1:9\ns3-insecure: false\n",
		"https with insecure":   "bucket: s3://h10-bucket/p\ns3-endpoint: https://127.0.0.1:9\ns3-insecure: true\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "segvault.yaml")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{
				{"config", "check", "--config", p, "--log-dirs", logDir},
				{"agent", "--once", "--config", p, "--log-dirs", logDir, "--state-dir", t.TempDir(), "--listen", ""},
			} {
				out, errOut, code := h6Exec(t, cmd...)
				if code != exitUsage || strings.Contains(out, "configuration OK") || !strings.Contains(errOut, "s3-insecure") {
					t.Errorf("segvault %s: exit %d, want 2 naming --s3-insecure\n%s\n%s", cmd[0], code, out, errOut)
				}
			}
		})
	}
}
