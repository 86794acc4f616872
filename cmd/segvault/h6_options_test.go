package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// h6OptionNames is every option (flag) name of every command, and the
// config-file keys (the same names).
func h6OptionNames() map[string]bool {
	names := map[string]bool{"help": true, "version": true, "generate-bash-completion": true}
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			for _, n := range f.Names() {
				names[n] = true
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Subcommands)
		}
	}
	app := newApp(nil, nil)
	walk(app.Flags, app.Commands)
	return names
}

// TestH6HintsNameRealOptions: every option a message of the program names
// (as --name, or as a snake_case key such as the former "disable_tls")
// exists.
func TestH6HintsNameRealOptions(t *testing.T) {
	names := h6OptionNames()
	dashed := regexp.MustCompile(`(?:^|[^-\w])--([a-z][a-z0-9-]*[a-z0-9])`)
	snake := regexp.MustCompile(`\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b`)
	// snake_case words that would be an option's name spelled as a key.
	known := map[string]bool{"disable_tls": true, "ca_file": true}
	for n := range names {
		if strings.Contains(n, "-") {
			known[strings.ReplaceAll(n, "-", "_")] = true
		}
	}
	fset := token.NewFileSet()
	for _, dir := range []string{".", "../../uploader", "../../agent", "../../restore", "../../segment", "../../index"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			// Store options as snake_case keys: the uploader's messages and
			// the store wiring (the agent's config keys are checked by its
			// own tests).
			checkSnake := dir == "../../uploader" || strings.HasSuffix(file, "store.go")
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseFile(fset, file, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				for _, m := range dashed.FindAllStringSubmatch(s, -1) {
					if !names[m[1]] {
						t.Errorf("%s: %q names option --%s, which does not exist", fset.Position(lit.Pos()), h6Short(s), m[1])
					}
				}
				for _, w := range snake.FindAllString(s, -1) {
					if checkSnake && known[w] && !strings.Contains(s, `json:"`) && !strings.Contains(s, `yaml:"`) {
						t.Errorf("%s: %q names option %s, spelled as no option is (want --%s)", fset.Position(lit.Pos()), h6Short(s), w, strings.ReplaceAll(w, "_", "-"))
					}
				}
				return true
			})
		}
	}
}

func h6Short(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// TestH6EndpointSchemeContradictsTLS: an http:// endpoint without
// --s3-insecure, or an https:// one with it, is refused (exit 2) with a
// message naming the real options, before anything is sent.
func TestH6EndpointSchemeContradictsTLS(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--s3-endpoint", "http://127.0.0.1:1"}, "--s3-insecure"},
		{[]string{"--s3-endpoint", "https://127.0.0.1:1", "--s3-insecure"}, "--s3-insecure"},
		{[]string{"--s3-endpoint", "http://127.0.0.1:1", "--s3-insecure", "--s3-ca-file", "/etc/hostname"}, "--s3-ca-file"},
	} {
		args := append([]string{"ls", "--bucket", "s3://h6-bucket", "--s3-access-key", "a", "--s3-secret-key", "b"}, tc.args...)
		out, errOut, code := h6Exec(t, args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("segvault %s: exit %d, want 2 and a message naming %s\n%s\n%s", strings.Join(args, " "), code, tc.want, out, errOut)
		}
	}
}
