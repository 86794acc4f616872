package agent

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the agent's Prometheus metrics (segvault_agent_*).
type Metrics struct {
	SegmentsArchived prometheus.Counter
	BytesArchived    prometheus.Counter // raw bytes of archived files
	BytesStored      prometheus.Counter // bytes written to the bucket
	Failures         *prometheus.CounterVec
	CorruptSegments  prometheus.Counter
	Conflicts        prometheus.Counter
	SegmentsLost     prometheus.Counter
	LagSegments      prometheus.Gauge
	LagBytes         prometheus.Gauge
	LagSeconds       prometheus.Gauge
	LastSuccess      prometheus.Gauge
	StagedBytes      prometheus.Gauge
	ScanSeconds      prometheus.Histogram
	RollToArchive    prometheus.Histogram
	PagesDropped     prometheus.Counter
	Partitions       prometheus.Gauge
	Watches          prometheus.Gauge
	PollingFallback  prometheus.Gauge
	RootCaptures     prometheus.Counter
	InFlight         prometheus.Gauge
	AlreadyInArchive prometheus.Counter
	Ready            prometheus.Gauge
	CacheBlind       prometheus.Gauge
	// SettleWaits counts rolled segments archived only after a bounded wait
	// for files that did not settle, by reason (index_zero_tail, ...).
	SettleWaits *prometheus.CounterVec
	// CleanerSwapPending is 1 for a partition whose log-cleaner swap
	// (.cleaned/.swap files) has persisted for several scan intervals.
	CleanerSwapPending *prometheus.GaugeVec
	TruncatedSegments  prometheus.Counter

	// Tail capture (issue 15).
	RPOSeconds      prometheus.Gauge
	TailCaptures    prometheus.Counter
	TailBytes       prometheus.Counter
	TailStoredBytes prometheus.Counter
	TailPuts        prometheus.Counter
	TailFailures    *prometheus.CounterVec // by stage
	TailRestarts    *prometheus.CounterVec // new chains from byte 0, by reason
	TailSkipped     *prometheus.CounterVec // bytes left for a later capture, by reason

	// One copy per partition (issue 16).
	PartitionRoles    *prometheus.GaugeVec   // partitions by role: owner, standby, takeover
	ReplicaDivergence *prometheus.CounterVec // standby segments compared with the archived copy, by result
}

// NewMetrics creates the metrics and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "segvault", Subsystem: "agent", Name: name, Help: help})
	}
	m := &Metrics{
		SegmentsArchived: c("segments_archived_total", "Segment versions committed to the bucket."),
		BytesArchived:    c("archived_bytes_total", "Raw bytes of files committed to the bucket."),
		BytesStored:      c("stored_bytes_total", "Bytes uploaded to the bucket after compression."),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent",
			Name: "failures_total", Help: "Failed attempts to archive a segment, by stage."}, []string{"stage"}),
		CorruptSegments:  c("corrupt_segments_total", "Segments that failed validation and were not archived."),
		Conflicts:        c("conflicts_total", "Objects found in the bucket with different content (never overwritten)."),
		SegmentsLost:     c("segments_lost_total", "Rolled segments deleted by Kafka before they could be archived."),
		LagSegments:      g("lag_segments", "Rolled segments not yet archived."),
		LagBytes:         g("lag_bytes", "Bytes of rolled segments not yet archived."),
		LagSeconds:       g("lag_seconds", "Age of the oldest rolled segment not yet archived."),
		LastSuccess:      g("last_success_timestamp_seconds", "Unix time of the last committed segment."),
		StagedBytes:      g("staged_bytes", "Bytes held by staging hard links."),
		ScanSeconds:      prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "segvault", Subsystem: "agent", Name: "scan_seconds", Help: "Duration of a full scan of the log dirs.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		RollToArchive:    prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "segvault", Subsystem: "agent", Name: "roll_to_archive_seconds", Help: "From a segment's roll (its successor appearing) to its manifest commit.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 14)}),
		PagesDropped:     c("page_cache_pages_dropped_total", "Page-cache pages the agent brought in and dropped again."),
		Partitions:       g("partitions", "Partition dirs watched."),
		Watches:          g("inotify_watches", "inotify watches held."),
		PollingFallback:  g("polling_fallback", "1 when inotify is unavailable and the agent relies on rescans only."),
		RootCaptures:     c("logdir_captures_total", "Log-dir root captures (meta.properties, checkpoints) uploaded."),
		InFlight:         g("uploads_in_flight", "Segments being shipped now."),
		AlreadyInArchive: c("already_archived_total", "Segments found already committed in the bucket (no upload)."),
		Ready:            g("ready", "1 when the last scan of the log dirs succeeded (as /readyz)."),
		CacheBlind:       g("page_cache_blind", "1 when the kernel hides page-cache residency from the agent (it cannot write Kafka's files), so it drops no pages."),
	}
	m.SettleWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: "settle_waits_total",
		Help: "Rolled segments whose files did not settle (e.g. an index with a zero-filled tail), archived after a bounded wait without them, by reason."}, []string{"reason"})
	m.CleanerSwapPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "segvault", Subsystem: "agent", Name: "cleaner_swap_pending",
		Help: "1 for a partition whose log-cleaner swap (.cleaned/.swap files) has persisted for several scan intervals."}, []string{"topic", "partition"})
	m.TruncatedSegments = c("truncated_segments_total", "Active segments of a stopped broker archived up to their last complete batch (torn tail).")
	m.RPOSeconds = g("rpo_seconds", "Age of the oldest byte appended to this broker's partitions that is neither captured (tail capture) nor in an archived rolled segment.")
	m.TailCaptures = c("tail_captures_total", "Tail-capture packs committed (one per broker and round with new bytes).")
	m.TailBytes = c("tail_captured_bytes_total", "Raw bytes of active segments committed by tail captures.")
	m.TailStoredBytes = c("tail_stored_bytes_total", "Bytes uploaded by tail captures (packs and their manifests, after compression).")
	m.TailPuts = c("tail_puts_total", "PUT requests made by tail capture (packs, manifests, abandon markers).")
	m.TailFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: "tail_failures_total",
		Help: "Failed tail-capture steps, by stage (scan, read, pack, manifest, resolve, state)."}, []string{"stage"})
	m.TailRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: "tail_chain_restarts_total",
		Help: "Active segments whose captured bytes no longer match the file (truncated, rewritten, replaced): captured again from byte 0, by reason."}, []string{"reason"})
	m.TailSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: "tail_skipped_total",
		Help: "Tail reads that stopped before the end of the file, by reason (invalid_batch, changed_while_read, budget; standby: a track left to the partition's designated archiver)."}, []string{"reason"})
	m.PartitionRoles = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "segvault", Subsystem: "agent", Name: "partition_roles",
		Help: "Partitions of this broker by role: owner (this agent archives them), standby (another replica's agent does), takeover (standby archiving segments the archive lacks)."}, []string{"role"})
	m.ReplicaDivergence = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "segvault", Subsystem: "agent", Name: "replica_divergence_total",
		Help: "A standby replica's rolled segments compared with another broker's archived copy, by result (same, diverged, not_comparable: other segment boundaries or no chunk CRCs)."}, []string{"result"})
	for _, r := range []string{"owner", "standby", "takeover"} {
		m.PartitionRoles.WithLabelValues(r)
	}
	for _, r := range []string{DivergenceSame, DivergenceDiverged, DivergenceNotComparable} {
		m.ReplicaDivergence.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.PartitionRoles, m.ReplicaDivergence)
		reg.MustRegister(m.RPOSeconds, m.TailCaptures, m.TailBytes, m.TailStoredBytes, m.TailPuts, m.TailFailures, m.TailRestarts, m.TailSkipped)
		reg.MustRegister(m.SettleWaits, m.CleanerSwapPending, m.TruncatedSegments)
		reg.MustRegister(m.SegmentsArchived, m.BytesArchived, m.BytesStored, m.Failures, m.CorruptSegments, m.Conflicts,
			m.SegmentsLost, m.LagSegments, m.LagBytes, m.LagSeconds, m.LastSuccess, m.StagedBytes, m.ScanSeconds,
			m.RollToArchive, m.PagesDropped, m.Partitions, m.Watches, m.PollingFallback, m.RootCaptures, m.InFlight, m.AlreadyInArchive,
			m.Ready, m.CacheBlind)
	}
	return m
}
