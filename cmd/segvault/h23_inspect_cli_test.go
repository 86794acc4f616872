package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// h23GoldenDir holds inspect's goldens, beside the printers in
// internal/inspect; cases.json there lists each golden's flags and files.
const h23GoldenDir = "../../internal/inspect/testdata/golden"

// TestH23InspectCLIMatchesGoldens runs `segvault inspect` itself over every
// golden case of internal/inspect: the CLI's wiring (flags, stdout) must
// print exactly the bytes the printers' goldens hold, exit 0, stderr empty.
func TestH23InspectCLIMatchesGoldens(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(h23GoldenDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Golden string   `json:"golden"`
		Args   []string `json:"args"`
		Files  []string `json:"files"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil || len(cases) == 0 {
		t.Fatalf("cases.json: %v (%d cases)", err, len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.Golden, func(t *testing.T) {
			args := append([]string{"inspect"}, tc.Args...)
			for _, f := range tc.Files {
				args = append(args, fixture(t, f))
			}
			out, errOut, code := runSegvault(t, args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut)
			}
			want, err := os.ReadFile(filepath.Join(h23GoldenDir, tc.Golden))
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("segvault inspect %v differs from %s", tc.Args, tc.Golden)
			}
		})
	}
}

// TestH23VerifyCLIMatchesGoldens runs `segvault verify --json` over the
// VerifyPath golden cases of internal/inspect: same bytes, exit 0.
func TestH23VerifyCLIMatchesGoldens(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(h23GoldenDir, "verify-cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Golden string   `json:"golden"`
		Deep   bool     `json:"deep"`
		Paths  []string `json:"paths"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil || len(cases) == 0 {
		t.Fatalf("verify-cases.json: %v (%d cases)", err, len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.Golden, func(t *testing.T) {
			args := []string{"verify", "--json"}
			if tc.Deep {
				args = append(args, "--deep")
			}
			for _, p := range tc.Paths {
				args = append(args, fixture(t, p))
			}
			out, errOut, code := runSegvault(t, args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut)
			}
			want, err := os.ReadFile(filepath.Join(h23GoldenDir, tc.Golden))
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("segvault %v differs from %s", args[:len(args)-len(tc.Paths)], tc.Golden)
			}
		})
	}
}
