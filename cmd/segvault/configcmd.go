package main

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"

	"github.com/segvault/segvault/uploader"
)

func compileRegexp(flag, s string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, usageErr("--%s: %v", flag, err)
	}
	return re, nil
}

// loadConfigFile is the Before hook of every command with --config: it
// applies the YAML file under the flags and the environment. A file that
// cannot be read or parsed, or that holds a key that is not an option, is a
// usage error (exit 2): the agent, config check and every other command
// read the file through here, so they agree on what it means.
func loadConfigFile(flags []cli.Flag) cli.BeforeFunc {
	load := altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config"))
	return func(c *cli.Context) error {
		if p := c.String("config"); p != "" {
			if err := checkConfigKeys(p, flags); err != nil {
				return err
			}
		}
		if err := load(c); err != nil {
			return usageErr("--config %s: %v", c.String("config"), err)
		}
		return nil
	}
}

// checkConfigKeys rejects keys of the YAML file at p that are not options
// (of this command or of the agent: one file serves every command), named
// as users type them, with the closest option when there is one.
func checkConfigKeys(p string, flags []cli.Flag) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return usageErr("--config: %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return usageErr("--config %s: %v", p, err)
	}
	known := map[string]bool{}
	for _, f := range append(append(append([]cli.Flag{}, flags...), agentFlags()...), pruneFlags()...) {
		for _, n := range f.Names() {
			known[n] = n != "config" && n != "once" // command-line only
		}
	}
	var bad []string
	for k := range m {
		if known[k] {
			continue
		}
		msg := fmt.Sprintf("unknown option %q", k)
		if s := closestOption(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		bad = append(bad, msg)
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return usageErr("--config %s: %s", p, strings.Join(bad, "; "))
}

// closestOption is the known option nearest to k by edit distance, if it is
// a plausible typo (at most 3 edits).
func closestOption(k string, known map[string]bool) string {
	best, bestD := "", 4
	for n, ok := range known {
		if !ok {
			continue
		}
		if d := editDistance(k, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func configCommand() *cli.Command {
	flags := agentFlags()
	return &cli.Command{
		Name:  "config",
		Usage: "configuration tools",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "validate the agent configuration and print the effective one, secrets redacted",
			Description: `Reads the config file, the environment and the flags exactly as "segvault agent" does
(a flag wins over the environment, which wins over the file), rejects unknown keys in the file
(as the agent does),
validates every option and prints the result.

Example:
  segvault config check --config /etc/segvault/segvault.yaml`,
			Flags:  flags,
			Before: loadConfigFile(flags),
			Action: runConfigCheck,
		}},
	}
}

func runConfigCheck(c *cli.Context) error {
	var problems []string // unknown keys in the file were rejected by loadConfigFile
	cfg := agentConfig(c)
	if err := cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if c.String("bucket") != "" {
		if _, err := encodeOptions(c, cfg); err != nil {
			problems = append(problems, err.Error())
		}
		// The store options the agent refuses (a scheme that contradicts
		// the TLS options, ...), checked without connecting.
		if store, _, err := uploader.SplitURL(c.String("bucket")); err != nil {
			problems = append(problems, fmt.Sprintf("--bucket: %v", err))
		} else if strings.HasPrefix(store, "s3://") {
			if o, err := s3Options(c); err != nil {
				problems = append(problems, err.Error())
			} else if err := o.Validate(); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	w := c.App.Writer
	fmt.Fprintln(w, "# effective configuration (flag > environment > file); secrets redacted")
	var names []string
	for _, f := range agentFlags() {
		names = append(names, f.Names()[0])
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "once" || n == "config" {
			continue
		}
		v := yamlValue(c.Value(n))
		if secretFlags[n] && v != "" {
			v = "<redacted>"
		}
		out, err := yaml.Marshal(map[string]any{n: v})
		if err != nil {
			return err
		}
		fmt.Fprint(w, string(out))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return &exitError{code: exitUsage, err: fmt.Errorf("configuration is invalid:\n  %s", strings.Join(problems, "\n  "))}
	}
	fmt.Fprintln(w, "# configuration OK")
	return nil
}

// yamlValue is a flag's value as the config file would spell it: numbers
// and booleans as such, durations as "30s", lists as lists.
func yamlValue(v any) any {
	switch v := v.(type) {
	case cli.StringSlice:
		return append([]string{}, v.Value()...)
	case *cli.StringSlice:
		return append([]string{}, v.Value()...)
	case []string:
		return v
	case time.Duration:
		return v.String()
	case string, bool, int, int64, float64:
		return v
	}
	return fmt.Sprint(v)
}
