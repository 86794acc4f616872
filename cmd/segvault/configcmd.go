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
// cannot be read or parsed is a usage error (exit 2).
func loadConfigFile(flags []cli.Flag) cli.BeforeFunc {
	load := altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config"))
	return func(c *cli.Context) error {
		if err := load(c); err != nil {
			return usageErr("--config %s: %v", c.String("config"), err)
		}
		return nil
	}
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
(a flag wins over the environment, which wins over the file), rejects unknown keys in the file,
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
	known := map[string]bool{}
	for _, f := range agentFlags() {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	var problems []string
	if p := c.String("config"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return usageErr("--config: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return usageErr("--config %s: %v", p, err)
		}
		for k := range m {
			if !known[k] || k == "config" || k == "once" {
				problems = append(problems, fmt.Sprintf("%s: unknown option %q", p, k))
			}
		}
	}
	cfg := agentConfig(c)
	if err := cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if c.String("bucket") != "" {
		if _, err := encodeOptions(c, cfg); err != nil {
			problems = append(problems, err.Error())
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
