// Command segvault archives Kafka log segments to object storage and
// restores them into directories a broker boots on. This package is wiring
// only: flags, environment and config file into each package's Config,
// errors into exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/uploader"
)

// Set by the linker (-X main.version=...).
var version = "dev"

// Exit codes: the one contract of every command (docs/OPERATIONS.md, "Exit
// codes"; the systemd unit's RestartPreventExitStatus).
const (
	exitOK          = 0
	exitFailure     = 1   // the operation failed, or corruption or failures were found
	exitUsage       = 2   // bad usage or configuration (including urfave's own usage errors)
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM before it finished
)

// exitError carries an exit code through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil { // a code alone: the command has printed its findings
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// actionError marks an error returned by a command's own Action (not by
// urfave's flag parsing or command lookup): see tagActions.
type actionError struct{ err error }

func (e *actionError) Error() string { return e.err.Error() }
func (e *actionError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	startArgs = args
	// SIGINT and SIGTERM cancel the context of every command; a command that
	// ends with an error after that exits 130. A second signal, once the
	// first has cancelled the context, gets the default action (the process
	// ends) unless the command handles signals itself.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil {
		if msg := err.Error(); msg != "" && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "segvault:", msg)
		}
		fmt.Fprintln(stderr, "segvault: interrupted")
		return exitInterrupted
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "segvault:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "segvault:", err)
	var ae *actionError
	if !errors.As(err, &ae) {
		// Not from a command's Action: urfave's own usage errors (unknown
		// command or flag, bad flag value, missing required flag) or a
		// config file that does not load (Before).
		return exitUsage
	}
	if hint := uploader.Explain(err); hint != "" && hint != err.Error() && !strings.Contains(err.Error(), hint) {
		fmt.Fprintln(stderr, "hint:", hint)
	}
	return exitFailure
}

// usageError turns a flag parse error into a usage error (exit 2).
func usageError(_ *cli.Context, err error, _ bool) error {
	return &exitError{code: exitUsage, err: err}
}

// tagActions wraps every command's Action so that its errors are told apart
// from urfave's own usage errors, and sets OnUsageError everywhere.
func tagActions(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = usageError
		if act := cmd.Action; act != nil {
			cmd.Action = func(c *cli.Context) error {
				err := act(c)
				var ee *exitError
				if err == nil || errors.As(err, &ee) {
					return err
				}
				return &actionError{err: err}
			}
		}
		tagActions(cmd.Subcommands)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "segvault",
		Usage:   "archive Kafka log segments to object storage, verify them offline, restore them bootable",
		Version: version,
		Description: `segvault runs beside a Kafka broker. It watches the broker's log.dirs, validates every
rolled segment (record batches and CRCs, read from disk: no Kafka protocol, no broker load),
uploads it with its indexes and a manifest to S3-compatible storage or a local directory, and
restores partition directories from there with the original offsets.

Every option can also be given as an environment variable SEGVAULT_<OPTION> (upper case,
dashes as underscores) or as a key in the YAML file given with --config; a flag wins over the
environment, which wins over the file.

Exit status, for every command: 0 success, 1 the operation failed or found corruption or
failures, 2 usage or configuration error (including an unknown command or option and a bad or
missing option value), 130 interrupted by SIGINT or SIGTERM.`,
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
			pruneCommand(),
			infoCommand(),
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
		OnUsageError:   usageError,
	}
	tagActions(app.Commands)
	return app
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
