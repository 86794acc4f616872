package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
)

func agentFlags() []cli.Flag {
	d := agent.Defaults()
	return append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (keys are the option names below)", EnvVars: env("config")},
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "log-dirs", Usage: "Kafka log dirs to archive (default: log.dirs from --server-properties)", EnvVars: env("log-dirs")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "server-properties", Usage: "the broker's server.properties, read for log.dirs and node.id", EnvVars: env("server-properties")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "cluster-id", Usage: "cluster id (default: cluster.id from meta.properties)", EnvVars: env("cluster-id")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "broker-id", Value: -1, Usage: "broker id (default: node.id/broker.id from meta.properties)", EnvVars: env("broker-id")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "state-dir", Value: "/var/lib/segvault", Usage: "local state and staging links; same filesystem as the log dirs for retention protection", EnvVars: env("state-dir")}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "include-topics", Usage: "archive only topics matching these regular expressions (default: all, internal topics and the KRaft metadata log included)", EnvVars: env("include-topics")}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "exclude-topics", Usage: "skip topics matching these regular expressions", EnvVars: env("exclude-topics")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "scan-interval", Value: d.ScanInterval, Usage: "full rescan period (filesystem events trigger scans in between)", EnvVars: env("scan-interval")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "settle-time", Value: d.SettleTime, Usage: "a rolled segment's files must be unchanged this long before upload", EnvVars: env("settle-time")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "concurrency", Value: d.Concurrency, Usage: "segments uploaded at once", EnvVars: env("concurrency")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "deep", Usage: "decompress and parse every record before upload (default: batch framing and CRCs)", EnvVars: env("deep")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "compression", Value: d.Compression, Usage: "auto (zstd unless the data does not compress), zstd or none", EnvVars: env("compression")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "zstd-level", Value: d.ZstdLevel, Usage: "zstd level 1 (fastest) to 4 (best)", EnvVars: env("zstd-level")}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: "read-bandwidth", Usage: "disk read limit in bytes per second (0: none)", EnvVars: env("read-bandwidth")}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: "staging-budget", Value: d.StagingBudget, Usage: "bytes of not-yet-archived segments protected from retention by hard links (0: off)", EnvVars: env("staging-budget")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "drain-timeout", Value: d.DrainTimeout, Usage: "on SIGTERM, wait this long for uploads in flight", EnvVars: env("drain-timeout")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "keep-page-cache", Usage: "do not drop the page-cache pages the agent reads in", EnvVars: env("keep-page-cache")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "normal-priority", Usage: "do not lower the agent's CPU and I/O priority", EnvVars: env("normal-priority")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9464", Usage: "address for /metrics, /healthz and /readyz (empty: off)", EnvVars: env("listen")}),
		&cli.BoolFlag{Name: "once", Usage: "archive every rolled segment, then exit (no watching)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "tail-capture", Value: d.TailCapture, Usage: "on: upload the complete batches appended to every active segment every --tail-interval, so the recovery point is seconds, not the last roll; off: rolled segments only", EnvVars: env("tail-capture")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "tail-interval", Value: d.TailInterval, Usage: "tail capture period: one pack object per broker per interval when anything was appended", EnvVars: env("tail-interval")}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: "tail-max-bytes", Value: d.TailMaxBytes, Usage: "capture earlier once this many bytes were appended (never closer than 5s)", EnvVars: env("tail-max-bytes")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "include-active", Usage: "also archive each partition's active segment: only for a stopped broker (refused while Kafka holds the log dir's .lock)", EnvVars: env("include-active")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "archive-replicas", Value: d.ArchiveReplicas, Usage: "all (every replica's agent archives its copy) or designated (one copy per partition: the leader per the KRaft metadata log on disk, else a bucket claim; standbys take over after takeover-grace)", EnvVars: env("archive-replicas")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "metadata-log-dir", Usage: "directory holding __cluster_metadata-0 (metadata.log.dir; default: found in the log dirs)", EnvVars: env("metadata-log-dir")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "claim-ttl", Value: d.ClaimTTL, Usage: "archive-replicas=designated without a metadata log: a partition claim not renewed this long is taken over (renewed every claim-ttl/3)", EnvVars: env("claim-ttl")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "takeover-grace", Usage: "archive-replicas=designated: a standby archives its own segments once the archive has lacked their offsets this long (0: 3 settle-time + 2 scan-interval)", EnvVars: env("takeover-grace")}),
	}, storeFlags()...)
}

func agentCommand() *cli.Command {
	flags := agentFlags()
	return &cli.Command{
		Name:  "agent",
		Usage: "archive rolled segments and capture active segments' new batches from a broker's log dirs (daemon, or --once)",
		Description: `Watches the log dirs and uploads every segment once Kafka has rolled it (a later segment
exists and its files have settled). The daemon also captures the complete, validated batches
appended to every active segment every --tail-interval (tail capture, on by default; --once
does not capture, and --include-active archives a stopped broker's active segments). Each segment
is validated first (a corrupt one is reported with its file and byte position and not
uploaded), then its files and finally its manifest are created in the bucket; existing objects
are never overwritten, so running it again uploads nothing new.

Example:
  segvault agent --server-properties /etc/kafka/server.properties \
      --bucket s3://kafka-archive --s3-endpoint minio.internal:9000 --s3-path-style \
      --state-dir /var/lib/segvault
  segvault agent --once --log-dirs /var/lib/kafka/data --bucket file:///backup/segvault --state-dir /tmp/sv`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runAgent,
	}
}

// agentConfig builds agent.Config from the flags.
func agentConfig(c *cli.Context) agent.Config {
	cfg := agent.Defaults()
	cfg.LogDirs = c.StringSlice("log-dirs")
	cfg.ServerProperties = c.String("server-properties")
	cfg.ClusterID = c.String("cluster-id")
	cfg.BrokerID = int32(c.Int("broker-id"))
	cfg.Bucket = c.String("bucket")
	if l, err := archiveLayout(c); err == nil {
		cfg.Prefix = l.Prefix // the URL's prefix and --prefix, as every command reads them
	} else {
		cfg.Prefix = c.String("prefix") // openStore reports the error
	}
	cfg.StateDir = c.String("state-dir")
	cfg.IncludeTopics = c.StringSlice("include-topics")
	cfg.ExcludeTopics = c.StringSlice("exclude-topics")
	cfg.ScanInterval = c.Duration("scan-interval")
	cfg.SettleTime = c.Duration("settle-time")
	cfg.Concurrency = c.Int("concurrency")
	cfg.DeepValidate = c.Bool("deep")
	cfg.Compression = c.String("compression")
	cfg.ZstdLevel = c.Int("zstd-level")
	cfg.ReadBytesPerS = c.Int64("read-bandwidth")
	cfg.StagingBudget = c.Int64("staging-budget")
	cfg.DrainTimeout = c.Duration("drain-timeout")
	cfg.DropCache = !c.Bool("keep-page-cache")
	cfg.LowPriority = !c.Bool("normal-priority")
	cfg.IncludeActive = c.Bool("include-active")
	cfg.TailCapture = c.String("tail-capture")
	cfg.TailInterval = c.Duration("tail-interval")
	cfg.TailMaxBytes = c.Int64("tail-max-bytes")
	cfg.ArchiveReplicas = c.String("archive-replicas")
	cfg.MetadataLogDir = c.String("metadata-log-dir")
	cfg.ClaimTTL = c.Duration("claim-ttl")
	cfg.TakeoverGrace = c.Duration("takeover-grace")
	return cfg
}

// zstdLevels maps the agent's 1..4 to zstd levels (fastest, default, better, best).
var zstdLevels = map[int]int{1: 1, 2: 3, 3: 7, 4: 11}

func encodeOptions(c *cli.Context, cfg agent.Config) (archive.EncodeOptions, error) {
	o := archive.EncodeOptions{Compression: cfg.Compression, Level: zstdLevels[cfg.ZstdLevel]}
	if o.Compression == "auto" {
		o.Compression = archive.CompressionAuto
	}
	if p := c.String("encryption-key-file"); p != "" {
		k, err := archive.LoadKeyFile(p)
		if err != nil {
			return o, usageErr("--encryption-key-file: %v", err)
		}
		o.Key = k
	}
	return o, nil
}

func runAgent(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	cfg := agentConfig(c)
	if err := cfg.Validate(); err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("invalid configuration:\n%w", err)}
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, _, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	eo, err := encodeOptions(c, cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	cfg.EncryptionKey = eo.Key // tail-capture chunks are sealed like the archive's files
	enc := archive.NewEncoder(archive.EncoderOptions{TempDir: cfg.StateDir})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if len(cfg.LogDirs) > 0 {
		if err := checkLogDirs(cfg, cfg.LogDirs); err != nil {
			return err
		}
	}
	a, err := agent.New(ctx, cfg, agent.NewArchive(b, enc, eo), log, agent.NewMetrics(reg), version)
	if errors.Is(err, agent.ErrStateDirLocked) {
		return &exitError{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	defer a.Close()
	if len(cfg.LogDirs) == 0 { // taken from server.properties
		if err := checkLogDirs(cfg, a.LogDirs()); err != nil {
			return err
		}
	}
	if c.Bool("once") {
		rep, err := a.RunOnce(ctx)
		if err != nil && ctx.Err() != nil {
			fmt.Fprintf(c.App.Writer, "segvault agent --once: interrupted: %d segments archived, %d already archived, %d corrupt, %d lost, %d failed before the stop\n",
				rep.Archived, rep.Already, rep.Corrupt, rep.Lost, rep.Failed)
			return &exitError{code: agentExitInterrupted, err: errors.New("agent --once interrupted by a signal; run it again to finish")}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "segvault agent --once: %d partitions, %d segments archived (%d bytes, %d stored), %d already archived, %d corrupt, %d lost, %d failed\n",
			rep.Partitions, rep.Archived, rep.RawBytes, rep.Stored, rep.Already, rep.Corrupt, rep.Lost, rep.Failed)
		if rep.Truncated > 0 {
			fmt.Fprintf(c.App.Writer, "segvault agent --once: %d torn active segments archived truncated to their last complete batch (see the log for byte positions)\n", rep.Truncated)
		}
		if rep.Corrupt > 0 || rep.Failed > 0 || rep.Waiting > 0 {
			return &exitError{code: exitFailure, err: errors.Join(append([]error{fmt.Errorf("%d corrupt, %d failed and %d unfinished segments (see the log)", rep.Corrupt, rep.Failed, rep.Waiting)}, rep.Errors...)...)}
		}
		return nil
	}
	if addr := c.String("listen"); addr != "" {
		srv, err := serveHTTP(addr, reg, a, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	reload := make(chan agent.Config, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			nc, err := reloadConfig(c)
			if err != nil {
				a.ReloadFailed(fmt.Errorf("SIGHUP: %w", err))
				continue
			}
			reload <- nc
		}
	}()
	log.Info("segvault agent started", "version", version, "log_dirs", a.LogDirs(), "store", b.String())
	err = a.Run(ctx, reload)
	log.Info("segvault agent stopped")
	return err
}

// checkLogDirs makes a log dir that does not exist or is not a directory a
// configuration error (exit 2), before anything is archived; so is a
// meta.properties that cannot be read when no log dir can be identified.
func checkLogDirs(cfg agent.Config, dirs []string) error {
	broker := cfg.BrokerID
	if broker < 0 && cfg.ServerProperties != "" {
		if _, node, err := agent.ReadServerProperties(cfg.ServerProperties); err == nil {
			broker = node
		}
	}
	var idErr error
	identified := 0
	for _, d := range dirs {
		fi, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usageErr("log dir %s does not exist (--log-dirs, or log.dirs in --server-properties)", d)
		case err != nil:
			return usageErr("log dir %s: %v", d, err)
		case !fi.IsDir():
			return usageErr("log dir %s is not a directory", d)
		}
		if _, err := agent.ReadIdentity(d, cfg.ClusterID, broker); err != nil {
			idErr = errors.Join(idErr, err)
			continue
		}
		identified++
	}
	// With JBOD, one log dir whose meta.properties cannot be read is that
	// dir's failure (reported, retried, the others archived); when none
	// can say whose data it holds, nothing can be archived: configuration.
	if identified == 0 && idErr != nil {
		return &exitError{code: exitUsage, err: idErr}
	}
	return nil
}

// agentExitInterrupted is the exit status of an --once run stopped by
// SIGTERM or SIGINT (the shell's 128+SIGINT).
const agentExitInterrupted = 130

// startArgs is the command line segvault was started with (set by run).
var startArgs []string

// reloadConfig re-reads the config file for SIGHUP: the original command
// line and the environment are parsed again over the new file, so a flag
// still wins over the environment, which wins over the file.
func reloadConfig(c *cli.Context) (agent.Config, error) {
	var rest []string
	for i, a := range startArgs {
		if a == "agent" {
			rest = startArgs[i+1:]
			break
		}
	}
	flags := agentFlags()
	var cfg agent.Config
	app := &cli.App{Name: "reload", Flags: flags, Writer: io.Discard, ErrWriter: io.Discard,
		Before: loadConfigFile(flags),
		Action: func(nc *cli.Context) error { cfg = agentConfig(nc); return cfg.Validate() }}
	return cfg, app.Run(append([]string{"reload"}, rest...))
}

// serveHTTP serves /metrics, /healthz (the process is up) and /readyz (the
// last scan succeeded).
func serveHTTP(addr string, reg *prometheus.Registry, a *agent.Agent, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, err := a.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		if err != nil {
			fmt.Fprintln(w, "ready; last pass had errors:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return srv, nil
}

var _ = context.Background
