// Command segvault archives Kafka log segments to object storage and
// restores them into directories a broker boots on. This package is wiring
// only: flags, environment and config file into each package's Config,
// errors into exit codes.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/uploader"
)

// Set by the linker (-X main.version=...).
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the operation failed, or (verify) corruption was found
	exitUsage   = 2 // bad usage or configuration, I/O errors (verify)
)

// exitError carries an exit code through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	startArgs = args
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "segvault:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "segvault:", err)
	if hint := uploader.Explain(err); hint != "" && hint != err.Error() && !strings.Contains(err.Error(), hint) {
		fmt.Fprintln(stderr, "hint:", hint)
	}
	if strings.Contains(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "Required flag") {
		return exitUsage
	}
	return exitFailure
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "segvault",
		Usage:   "archive Kafka log segments to object storage, verify them offline, restore them bootable",
		Version: version,
		Description: `segvault runs beside a Kafka broker. It watches the broker's log.dirs, validates every
rolled segment (record batches and CRCs, read from disk: no Kafka protocol, no broker load),
uploads it with its indexes and a manifest to S3-compatible storage or a local directory, and
restores partition directories from there with the original offsets.

Every option can also be given as an environment variable SEGVAULT_<OPTION> (upper case,
dashes as underscores) or as a key in the YAML file given with --config; a flag wins over the
environment, which wins over the file.`,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json", EnvVars: []string{"SEGVAULT_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn, error", EnvVars: []string{"SEGVAULT_LOG_LEVEL"}},
		},
		Commands: []*cli.Command{
			agentCommand(),
			restoreCommand(),
			verifyCommand(),
			inspectCommand(),
			lsCommand(),
			configCommand(),
			genManCommand(), completionCommand(), // hidden: packaging (gendocs.go)
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "segvault %s\n", version)
					return nil
				},
			},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // exit codes are decided in run
	}
}

// newLogger builds the logger from the global flags.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErr("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	default:
		return nil, usageErr("--log-format: %q is not text or json", c.String("log-format"))
	}
}
