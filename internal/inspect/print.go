// Package inspect holds what `segvault inspect` and `segvault verify
// PATH...` do with Kafka's files, so that cmd/segvault is wiring only
// (flags, exit codes, output):
//
//   - Printer prints .log, KRaft snapshot, index, producer snapshot and text
//     side files in a form close to kafka-dump-log.sh, or as JSON lines;
//   - VerifyPath is the file-verification policy: which checks each file
//     kind gets in a file, partition dir or log dir, and the FileResult rows.
package inspect

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
)

// inspectKind is what inspect makes of a file name.
type inspectKind int

const (
	inspectUnknown inspectKind = iota
	inspectLog
	inspectKRaftSnapshot
	inspectOffsetIndex
	inspectTimeIndex
	inspectTxnIndex
	inspectProducerSnapshot
	inspectLeaderEpochs
	inspectPartitionMetadata
	inspectMetaProperties
	inspectOffsetCheckpoint
)

const bootstrapCheckpoint = "bootstrap.checkpoint"

func inspectKindOf(name string) (inspectKind, segment.FileName) {
	if n, ok := segment.ParseFileName(name); ok {
		switch n.Kind {
		case segment.KindLog:
			return inspectLog, n
		case segment.KindCheckpoint:
			return inspectKRaftSnapshot, n
		case segment.KindIndex:
			return inspectOffsetIndex, n
		case segment.KindTimeIndex:
			return inspectTimeIndex, n
		case segment.KindTxnIndex:
			return inspectTxnIndex, n
		case segment.KindSnapshot:
			return inspectProducerSnapshot, n
		}
	}
	switch {
	case name == bootstrapCheckpoint:
		return inspectKRaftSnapshot, segment.FileName{BaseOffset: -1, Epoch: -1, Kind: segment.KindCheckpoint}
	case name == index.LeaderEpochCheckpointFile:
		return inspectLeaderEpochs, segment.FileName{}
	case name == index.PartitionMetadataFile:
		return inspectPartitionMetadata, segment.FileName{}
	case name == index.MetaPropertiesFile:
		return inspectMetaProperties, segment.FileName{}
	case isRootFile(name):
		return inspectOffsetCheckpoint, segment.FileName{}
	}
	return inspectUnknown, segment.FileName{}
}

// Printer prints Kafka files the way `segvault inspect` shows them, to w
// (text close to kafka-dump-log.sh, or JSON lines); errors are returned,
// notes such as non-consecutive offsets go to errw.
type Printer struct {
	w, errw     io.Writer
	enc         *json.Encoder
	asJSON      bool
	records     bool
	data        bool
	maxReadSize int64 // side files are read whole; a larger one is refused
}

// Options choose what a Printer prints.
type Options struct {
	JSON        bool  // JSON lines: one object per batch or entry
	Records     bool  // every record of each batch (decompressing it)
	Data        bool  // also each record's key, payload and headers (needs Records)
	MaxReadSize int64 // side files are read whole; a larger one is refused (default 1 GiB)
}

// NewPrinter returns a Printer writing to w, notes to errw.
func NewPrinter(w, errw io.Writer, o Options) *Printer {
	if o.MaxReadSize <= 0 {
		o.MaxReadSize = 1 << 30
	}
	in := &Printer{w: w, errw: errw, asJSON: o.JSON, records: o.Records, data: o.Data, maxReadSize: o.MaxReadSize}
	in.enc = json.NewEncoder(w)
	in.enc.SetEscapeHTML(false)
	return in
}

// Knows reports whether name (a base name) is a file kind Printer prints.
func Knows(name string) bool {
	k, _ := inspectKindOf(name)
	return k != inspectUnknown
}

// IsCorruption tells a file's content errors (exit status 1) from I/O
// errors (exit status 2) in what Printer.File returns.
func IsCorruption(err error) bool {
	var ce *segment.CorruptionError
	var se *index.SideFileError
	return errors.As(err, &ce) || errors.As(err, &se) || errors.Is(err, index.ErrCorruptIndex) || errors.Is(err, errBadContent)
}

// errBadContent marks a content error inspect finds itself.
var errBadContent = errors.New("bad content")

// File prints the file at p, by its name: a .log, KRaft snapshot, index,
// producer snapshot or text side file (Knows). A corrupt file is printed up
// to its last valid batch or entry, then the error is returned.
func (in *Printer) File(p string) error {
	kind, n := inspectKindOf(filepath.Base(p))
	if !in.asJSON {
		fmt.Fprintf(in.w, "Dumping %s\n", p)
	}
	switch kind {
	case inspectLog, inspectKRaftSnapshot:
		return in.log(p, kind, n)
	}
	data, err := in.readSmall(p)
	if err != nil {
		return err
	}
	switch kind {
	case inspectOffsetIndex:
		return in.offsetIndex(p, data, n.BaseOffset)
	case inspectTimeIndex:
		return in.timeIndex(p, data, n.BaseOffset)
	case inspectTxnIndex:
		return in.txnIndex(p, data, n.BaseOffset)
	case inspectProducerSnapshot:
		return in.producerSnapshot(p, data)
	case inspectLeaderEpochs:
		return in.leaderEpochs(p, data)
	case inspectPartitionMetadata:
		return in.partitionMetadata(p, data)
	case inspectMetaProperties:
		return in.metaProperties(p, data)
	case inspectOffsetCheckpoint:
		return in.offsetCheckpoint(p, data)
	}
	return fmt.Errorf("%s: unknown file", p)
}

func (in *Printer) readSmall(p string) ([]byte, error) {
	f, err := fsutil.OpenRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > in.maxReadSize {
		return nil, fmt.Errorf("%s: %d bytes: too large for this kind of file: %w", p, fi.Size(), errBadContent)
	}
	return io.ReadAll(f)
}

func (in *Printer) emit(v any) {
	in.enc.Encode(v) //nolint:errcheck // a broken stdout shows as a short dump
}

// ---- .log and KRaft .checkpoint ----

type batchJSON struct {
	File                 string       `json:"file"`
	Type                 string       `json:"type"`
	BaseOffset           int64        `json:"base_offset"`
	LastOffset           int64        `json:"last_offset"`
	Count                int32        `json:"count"`
	Position             int64        `json:"position"`
	Size                 int64        `json:"size"`
	Magic                int8         `json:"magic"`
	CRC                  uint32       `json:"crc"`
	Codec                string       `json:"codec"`
	PartitionLeaderEpoch int32        `json:"partition_leader_epoch"`
	ProducerID           int64        `json:"producer_id"`
	ProducerEpoch        int16        `json:"producer_epoch"`
	BaseSequence         int32        `json:"base_sequence"`
	LastSequence         int32        `json:"last_sequence"`
	Transactional        bool         `json:"transactional"`
	Control              bool         `json:"control"`
	TimestampType        string       `json:"timestamp_type"`
	LogAppendTime        bool         `json:"log_append_time"`
	BaseTimestamp        int64        `json:"base_timestamp"`
	MaxTimestamp         int64        `json:"max_timestamp"`
	DeleteHorizonMs      *int64       `json:"delete_horizon_ms,omitempty"`
	Records              []recordJSON `json:"records,omitempty"`
}

type recordJSON struct {
	Offset           int64           `json:"offset"`
	Timestamp        int64           `json:"timestamp"`
	KeySize          int             `json:"key_size"`
	ValueSize        int             `json:"value_size"`
	Sequence         int32           `json:"sequence"`
	HeaderKeys       []string        `json:"header_keys"`
	ControlType      string          `json:"control_type,omitempty"`
	CoordinatorEpoch *int32          `json:"coordinator_epoch,omitempty"`
	ControlData      json.RawMessage `json:"control_data,omitempty"`
	Key              *string         `json:"key,omitempty"`
	KeyBase64        *string         `json:"key_base64,omitempty"`
	Payload          *string         `json:"payload,omitempty"`
	PayloadBase64    *string         `json:"payload_base64,omitempty"`
	Headers          []headerJSON    `json:"headers,omitempty"`
}

type headerJSON struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

func timestampType(b *segment.Batch) string {
	switch {
	case b.Magic == segment.MagicV0:
		return "NoTimestampType"
	case b.LogAppendTime():
		return "LogAppendTime"
	}
	return "CreateTime"
}

// lastSequence is DefaultRecordBatch.lastSequence: the base sequence plus the
// offset delta, wrapping at int32 max as producers do.
func lastSequence(b *segment.Batch) int32 {
	if b.BaseSequence < 0 {
		return -1
	}
	return incrementSequence(b.BaseSequence, b.LastOffsetDelta)
}

func incrementSequence(seq, delta int32) int32 {
	if seq > math.MaxInt32-delta {
		return delta - (math.MaxInt32 - seq) - 1
	}
	return seq + delta
}

func (in *Printer) log(p string, kind inspectKind, n segment.FileName) error {
	f, err := fsutil.OpenRegular(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	base := n.BaseOffset
	if !in.asJSON {
		switch {
		case kind == inspectLog:
			fmt.Fprintf(in.w, "Log starting offset: %d\n", n.BaseOffset)
		case filepath.Base(p) == bootstrapCheckpoint:
			fmt.Fprintln(in.w, "KRaft bootstrap snapshot")
		default:
			fmt.Fprintf(in.w, "Snapshot end offset: %d, epoch: %d\n", n.BaseOffset, n.Epoch)
		}
	}
	if kind == inspectKRaftSnapshot {
		base = -1 // a snapshot's batches start at offset 0 whatever its name says
	}
	r := segment.NewReader(f, fi.Size(), p, segment.ReaderOptions{BaseOffset: base})
	var gaps [][2]int64
	last := int64(-1)
	for r.Next() {
		b := r.Batch()
		var recs []segment.Record
		if in.records {
			if recs, err = r.Records(); err != nil {
				break
			}
			for _, rec := range recs {
				if last >= 0 && rec.Offset != last+1 {
					gaps = append(gaps, [2]int64{last, rec.Offset})
				}
				last = rec.Offset
			}
		}
		if in.asJSON {
			in.emit(in.batchJSON(p, b, recs))
			continue
		}
		in.printBatch(b)
		for i := range recs {
			in.printRecord(b, &recs[i])
		}
	}
	if !in.asJSON && len(gaps) > 0 {
		fmt.Fprintf(in.errw, "Non-consecutive offsets in %s\n", p)
		for _, g := range gaps {
			fmt.Fprintf(in.errw, "  %d is followed by %d\n", g[0], g[1])
		}
	}
	return r.Err()
}

func (in *Printer) printBatch(b *segment.Batch) {
	if b.Magic >= segment.MagicV2 {
		horizon := "OptionalLong.empty"
		if b.HasDeleteHorizon() {
			horizon = fmt.Sprintf("OptionalLong[%d]", b.BaseTimestamp)
		}
		fmt.Fprintf(in.w, "baseOffset: %d lastOffset: %d count: %d baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t deleteHorizonMs: %s",
			b.BaseOffset, b.LastOffset(), b.RecordCount, b.BaseSequence, lastSequence(b), b.ProducerID, b.ProducerEpoch, b.PartitionLeaderEpoch,
			b.Transactional(), b.Control(), horizon)
	} else {
		fmt.Fprintf(in.w, "offset: %d", b.LastOffset())
	}
	fmt.Fprintf(in.w, " position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: true\n",
		b.Pos, timestampType(b), b.MaxTimestamp, b.Size(), b.Magic, b.Codec(), b.CRC)
}

func (in *Printer) printRecord(b *segment.Batch, rec *segment.Record) {
	w := in.w
	fmt.Fprintf(w, "| offset: %d %s: %d keySize: %d valueSize: %d", rec.Offset, timestampType(b), rec.Timestamp, size(rec.Key), size(rec.Value))
	if b.Magic >= segment.MagicV2 {
		keys := make([]string, len(rec.Headers))
		for i, h := range rec.Headers {
			keys[i] = escape(h.Key)
		}
		fmt.Fprintf(w, " sequence: %d headerKeys: [%s]", recordSequence(b, rec), strings.Join(keys, ","))
	}
	if b.Control() {
		fmt.Fprint(w, " "+controlText(rec))
	} else if in.data {
		if rec.Key != nil {
			fmt.Fprintf(w, " key: %s", escape(rec.Key))
		}
		if rec.Value != nil {
			fmt.Fprintf(w, " payload: %s", escape(rec.Value))
		}
		for _, h := range rec.Headers {
			v := "null"
			if h.Value != nil {
				v = escape(h.Value)
			}
			fmt.Fprintf(w, " header: %s=%s", escape(h.Key), v)
		}
	}
	fmt.Fprintln(w)
}

// size is a key or value length as Kafka reports it: -1 for null.
func size(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

// recordSequence is DefaultRecord.sequence: the batch's base sequence plus
// the record's offset delta, -1 without one.
func recordSequence(b *segment.Batch, rec *segment.Record) int32 {
	if b.BaseSequence < 0 || b.Magic < segment.MagicV2 {
		return -1
	}
	return incrementSequence(b.BaseSequence, int32(rec.Offset-b.BaseOffset))
}

// controlInfo decodes a control record the way DumpLogSegments shows it.
type controlInfo struct {
	typ       segment.ControlType
	typeErr   error
	coordEp   int32
	hasCoord  bool
	data      string // JSON of a KRaft control record's value, "" if not decoded
	dataLabel string // SnapshotHeader, SnapshotFooter, KRaftVersion
	err       error  // the value could not be decoded
}

func decodeControl(rec *segment.Record) controlInfo {
	var ci controlInfo
	ci.typ, ci.typeErr = segment.ParseControlKey(rec.Key)
	if ci.typeErr != nil {
		return ci
	}
	switch ci.typ {
	case segment.ControlAbort, segment.ControlCommit:
		ci.coordEp, ci.err = segment.ParseEndTxnMarker(rec.Value)
		ci.hasCoord = ci.err == nil
	case segment.ControlSnapshotHeader:
		ci.dataLabel = "SnapshotHeader"
		if len(rec.Value) >= 10 {
			ci.data = fmt.Sprintf(`{"version":%d,"lastContainedLogTimestamp":%d}`, int16(binary.BigEndian.Uint16(rec.Value)), int64(binary.BigEndian.Uint64(rec.Value[2:])))
		}
	case segment.ControlSnapshotFooter:
		ci.dataLabel = "SnapshotFooter"
		if len(rec.Value) >= 2 {
			ci.data = fmt.Sprintf(`{"version":%d}`, int16(binary.BigEndian.Uint16(rec.Value)))
		}
	case segment.ControlKRaftVersion:
		ci.dataLabel = "KRaftVersion"
		if len(rec.Value) >= 4 {
			ci.data = fmt.Sprintf(`{"version":%d,"kRaftVersion":%d}`, int16(binary.BigEndian.Uint16(rec.Value)), int16(binary.BigEndian.Uint16(rec.Value[2:])))
		}
	}
	return ci
}

func controlText(rec *segment.Record) string {
	ci := decodeControl(rec)
	switch {
	case ci.typeErr != nil:
		return fmt.Sprintf("controlType: invalid (%v)", ci.typeErr)
	case ci.typ == segment.ControlAbort || ci.typ == segment.ControlCommit:
		if ci.err != nil {
			return fmt.Sprintf("endTxnMarker: %s (%v)", ci.typ, ci.err)
		}
		return fmt.Sprintf("endTxnMarker: %s coordinatorEpoch: %d", ci.typ, ci.coordEp)
	case ci.data != "":
		return ci.dataLabel + " " + ci.data
	}
	return fmt.Sprintf("controlType: %s(%d)", ci.typ, int16(ci.typ))
}

func (in *Printer) batchJSON(p string, b *segment.Batch, recs []segment.Record) batchJSON {
	j := batchJSON{File: p, Type: "batch",
		BaseOffset: b.BaseOffset, LastOffset: b.LastOffset(), Count: b.RecordCount, Position: b.Pos, Size: b.Size(),
		Magic: b.Magic, CRC: b.CRC, Codec: b.Codec().String(), PartitionLeaderEpoch: b.PartitionLeaderEpoch,
		ProducerID: b.ProducerID, ProducerEpoch: b.ProducerEpoch, BaseSequence: b.BaseSequence, LastSequence: lastSequence(b),
		Transactional: b.Transactional(), Control: b.Control(), TimestampType: timestampType(b), LogAppendTime: b.LogAppendTime(),
		BaseTimestamp: b.BaseTimestamp, MaxTimestamp: b.MaxTimestamp,
	}
	if b.HasDeleteHorizon() {
		h := b.BaseTimestamp
		j.DeleteHorizonMs = &h
	}
	if in.records {
		j.Records = make([]recordJSON, 0, len(recs))
	}
	for i := range recs {
		rec := &recs[i]
		rj := recordJSON{Offset: rec.Offset, Timestamp: rec.Timestamp, KeySize: size(rec.Key), ValueSize: size(rec.Value),
			Sequence: recordSequence(b, rec), HeaderKeys: make([]string, len(rec.Headers))}
		for k, h := range rec.Headers {
			rj.HeaderKeys[k] = string(h.Key)
		}
		if b.Control() {
			ci := decodeControl(rec)
			rj.ControlType = ci.typ.String()
			if ci.typeErr != nil {
				rj.ControlType = "invalid"
			}
			if ci.hasCoord {
				ep := ci.coordEp
				rj.CoordinatorEpoch = &ep
			}
			if ci.data != "" {
				rj.ControlData = json.RawMessage(ci.data)
			}
		} else if in.data {
			rj.Key, rj.KeyBase64 = jsonBytes(rec.Key)
			rj.Payload, rj.PayloadBase64 = jsonBytes(rec.Value)
			for _, h := range rec.Headers {
				hj := headerJSON{Key: string(h.Key)}
				hj.Value, hj.ValueBase64 = jsonBytes(h.Value)
				rj.Headers = append(rj.Headers, hj)
			}
		}
		j.Records = append(j.Records, rj)
	}
	return j
}

// jsonBytes carries bytes in JSON: as a string when they are valid UTF-8,
// else in base64 (encoding/json would replace invalid bytes). nil stays
// absent.
func jsonBytes(b []byte) (s, b64 *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		v := string(b)
		return &v, nil
	}
	v := base64.StdEncoding.EncodeToString(b)
	return nil, &v
}

// escape makes bytes safe to print on a terminal: printable UTF-8 stays as it
// is; a backslash, control and format characters (escape sequences, bidi
// overrides) and invalid UTF-8 become Go-style escapes.
func escape(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&sb, `\x%02x`, b[0])
		case r == '\\':
			sb.WriteString(`\\`)
		case r == ' ' || (unicode.IsPrint(r) && r != utf8.RuneError):
			sb.Write(b[:n])
		default:
			q := strconv.QuoteRuneToASCII(r) // '\n', '\x1b', '\u202e'
			sb.WriteString(q[1 : len(q)-1])
		}
		b = b[n:]
	}
	return sb.String()
}

// ---- index files ----

// sideErr returns err, or, when only a torn last entry was cut off before
// parsing (whole shorter than data), the parser's error for the whole file.
func sideErr(err error, data, whole []byte, parse func([]byte) error) error {
	if err == nil && len(whole) != len(data) {
		return parse(data)
	}
	return err
}

// wholeEntries drops a torn last entry, so what precedes it is printed
// before the size error is.
func wholeEntries(data []byte, size int) []byte { return data[:len(data)-len(data)%size] }

func (in *Printer) offsetIndex(p string, data []byte, base int64) error {
	whole := wholeEntries(data, index.OffsetEntrySize)
	idx, err := index.ParseOffsetIndex(p, whole, base)
	if len(idx.Entries) == 0 && err == nil && len(whole) == len(data) && !in.asJSON {
		fmt.Fprintf(in.w, "%s is empty.\n", p)
	}
	for _, e := range idx.Entries {
		if in.asJSON {
			in.emit(struct {
				File     string `json:"file"`
				Type     string `json:"type"`
				Offset   int64  `json:"offset"`
				Position int32  `json:"position"`
			}{p, "offset_index", e.Offset, e.Position})
			continue
		}
		fmt.Fprintf(in.w, "offset: %d position: %d\n", e.Offset, e.Position)
	}
	return sideErr(err, data, whole, func(b []byte) error { _, err := index.ParseOffsetIndex(p, b, base); return err })
}

func (in *Printer) timeIndex(p string, data []byte, base int64) error {
	whole := wholeEntries(data, index.TimeEntrySize)
	idx, err := index.ParseTimeIndex(p, whole, base)
	if len(idx.Entries) == 0 && err == nil && len(whole) == len(data) && !in.asJSON {
		fmt.Fprintf(in.w, "%s is empty.\n", p)
	}
	for _, e := range idx.Entries {
		if in.asJSON {
			in.emit(struct {
				File      string `json:"file"`
				Type      string `json:"type"`
				Timestamp int64  `json:"timestamp"`
				Offset    int64  `json:"offset"`
			}{p, "time_index", e.Timestamp, e.Offset})
			continue
		}
		fmt.Fprintf(in.w, "timestamp: %d offset: %d\n", e.Timestamp, e.Offset)
	}
	return sideErr(err, data, whole, func(b []byte) error { _, err := index.ParseTimeIndex(p, b, base); return err })
}

func (in *Printer) txnIndex(p string, data []byte, base int64) error {
	whole := wholeEntries(data, index.TxnEntrySize)
	txns, err := index.ParseTxnIndex(p, whole, base)
	for _, t := range txns {
		if in.asJSON {
			in.emit(struct {
				File             string `json:"file"`
				Type             string `json:"type"`
				Version          int    `json:"version"`
				ProducerID       int64  `json:"producer_id"`
				FirstOffset      int64  `json:"first_offset"`
				LastOffset       int64  `json:"last_offset"`
				LastStableOffset int64  `json:"last_stable_offset"`
			}{p, "txn_index", 0, t.ProducerID, t.FirstOffset, t.LastOffset, t.LastStableOffset})
			continue
		}
		fmt.Fprintf(in.w, "version: 0 producerId: %d firstOffset: %d lastOffset: %d lastStableOffset: %d\n",
			t.ProducerID, t.FirstOffset, t.LastOffset, t.LastStableOffset)
	}
	return sideErr(err, data, whole, func(b []byte) error { _, err := index.ParseTxnIndex(p, b, base); return err })
}

// decrementSequence is DefaultRecordBatch.decrementSequence.
func decrementSequence(seq, dec int32) int32 {
	if seq < dec {
		return math.MaxInt32 - (dec - seq) + 1
	}
	return seq - dec
}

func (in *Printer) producerSnapshot(p string, data []byte) error {
	entries, err := index.DecodeProducerSnapshot(p, data)
	if err != nil {
		return err
	}
	for _, e := range entries {
		firstSeq := decrementSequence(e.LastSequence, e.OffsetDelta)
		if in.asJSON {
			in.emit(struct {
				File                  string `json:"file"`
				Type                  string `json:"type"`
				ProducerID            int64  `json:"producer_id"`
				ProducerEpoch         int16  `json:"producer_epoch"`
				CoordinatorEpoch      int32  `json:"coordinator_epoch"`
				CurrentTxnFirstOffset int64  `json:"current_txn_first_offset"`
				LastTimestamp         int64  `json:"last_timestamp"`
				FirstSequence         int32  `json:"first_sequence"`
				LastSequence          int32  `json:"last_sequence"`
				LastOffset            int64  `json:"last_offset"`
				OffsetDelta           int32  `json:"offset_delta"`
			}{p, "producer", e.ProducerID, e.Epoch, e.CoordinatorEpoch, e.CurrentTxnFirstOffset, e.Timestamp,
				firstSeq, e.LastSequence, e.LastOffset, e.OffsetDelta})
			continue
		}
		txn := "OptionalLong.empty"
		if e.CurrentTxnFirstOffset >= 0 {
			txn = fmt.Sprintf("OptionalLong[%d]", e.CurrentTxnFirstOffset)
		}
		fmt.Fprintf(in.w, "producerId: %d producerEpoch: %d coordinatorEpoch: %d currentTxnFirstOffset: %s lastTimestamp: %d firstSequence: %d lastSequence: %d lastOffset: %d offsetDelta: %d timestamp: %d\n",
			e.ProducerID, e.Epoch, e.CoordinatorEpoch, txn, e.Timestamp, firstSeq, e.LastSequence, e.LastOffset, e.OffsetDelta, e.Timestamp)
	}
	return nil
}

// ---- text side files ----

func (in *Printer) leaderEpochs(p string, data []byte) error {
	entries, err := index.ParseLeaderEpochCheckpoint(p, data)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if in.asJSON {
			in.emit(struct {
				File        string `json:"file"`
				Type        string `json:"type"`
				Epoch       int32  `json:"epoch"`
				StartOffset int64  `json:"start_offset"`
			}{p, "leader_epoch", e.Epoch, e.StartOffset})
			continue
		}
		fmt.Fprintf(in.w, "epoch: %d startOffset: %d\n", e.Epoch, e.StartOffset)
	}
	return nil
}

func (in *Printer) partitionMetadata(p string, data []byte) error {
	id, err := index.ParsePartitionMetadata(p, data)
	if err != nil {
		return err
	}
	if in.asJSON {
		in.emit(struct {
			File    string `json:"file"`
			Type    string `json:"type"`
			TopicID string `json:"topic_id"`
		}{p, "partition_metadata", id})
		return nil
	}
	fmt.Fprintf(in.w, "topicId: %s\n", id)
	return nil
}

func (in *Printer) metaProperties(p string, data []byte) error {
	m, err := index.ParseMetaProperties(p, data)
	if err != nil {
		return err
	}
	if in.asJSON {
		in.emit(struct {
			File        string            `json:"file"`
			Type        string            `json:"type"`
			Version     int               `json:"version"`
			NodeID      int32             `json:"node_id"`
			ClusterID   string            `json:"cluster_id,omitempty"`
			DirectoryID string            `json:"directory_id,omitempty"`
			Other       map[string]string `json:"other,omitempty"`
		}{p, "meta_properties", m.Version, m.NodeID, m.ClusterID, m.DirectoryID, m.Other})
		return nil
	}
	fmt.Fprintf(in.w, "version: %d nodeId: %d clusterId: %s directoryId: %s\n", m.Version, m.NodeID, orNone(m.ClusterID), orNone(m.DirectoryID))
	keys := make([]string, 0, len(m.Other))
	for k := range m.Other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(in.w, "%s: %s\n", escape([]byte(k)), escape([]byte(m.Other[k])))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (in *Printer) offsetCheckpoint(p string, data []byte) error {
	entries, err := index.ParseOffsetCheckpoint(p, data)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if in.asJSON {
			in.emit(struct {
				File      string `json:"file"`
				Type      string `json:"type"`
				Topic     string `json:"topic"`
				Partition int32  `json:"partition"`
				Offset    int64  `json:"offset"`
			}{p, "offset_checkpoint", e.Topic, e.Partition, e.Offset})
			continue
		}
		fmt.Fprintf(in.w, "topic: %s partition: %d offset: %d\n", e.Topic, e.Partition, e.Offset)
	}
	return nil
}
