package segment

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// FileKind is what a file in a partition directory holds.
type FileKind int

// File kinds, by file name extension.
const (
	KindUnknown    FileKind = iota
	KindLog                 // .log
	KindIndex               // .index
	KindTimeIndex           // .timeindex
	KindTxnIndex            // .txnindex
	KindSnapshot            // .snapshot (producer state)
	KindCheckpoint          // <offset>-<epoch>.checkpoint (KRaft snapshot)
)

var kindExt = map[FileKind]string{
	KindLog: ".log", KindIndex: ".index", KindTimeIndex: ".timeindex", KindTxnIndex: ".txnindex",
	KindSnapshot: ".snapshot", KindCheckpoint: ".checkpoint",
}

// Ext is the file name extension of the kind, with its dot.
func (k FileKind) Ext() string { return kindExt[k] }

func (k FileKind) String() string {
	if e, ok := kindExt[k]; ok {
		return e[1:]
	}
	return "unknown"
}

// File name suffixes Kafka appends while a file changes state
// (storage/.../log/LogFileUtils.java, raft/.../snapshot/Snapshots.java).
const (
	SuffixDeleted = ".deleted"
	SuffixCleaned = ".cleaned"
	SuffixSwap    = ".swap"
	SuffixPart    = ".part" // KRaft snapshot being written
)

// OffsetDigits is the width of the zero-padded offset in segment file names.
const OffsetDigits = 20

// FileName is a parsed segment-family file name such as
// 00000000000000001234.timeindex.deleted.
type FileName struct {
	BaseOffset int64
	Epoch      int32 // KRaft snapshots only
	Kind       FileKind
	Suffix     string // "", SuffixDeleted, SuffixCleaned, SuffixSwap or SuffixPart
}

// String rebuilds the canonical file name.
func (n FileName) String() string {
	if n.Kind == KindCheckpoint {
		return fmt.Sprintf("%020d-%010d.checkpoint%s", n.BaseOffset, n.Epoch, n.Suffix)
	}
	return fmt.Sprintf("%020d%s%s", n.BaseOffset, n.Kind.Ext(), n.Suffix)
}

// FormatName returns the file name Kafka uses for a base offset and kind.
func FormatName(base int64, kind FileKind) string {
	return FileName{BaseOffset: base, Kind: kind}.String()
}

// ParseFileName parses a segment-family file name. It returns ok=false for
// any name that is not exactly of Kafka's form (other files in a partition dir,
// like leader-epoch-checkpoint, are not segment files).
func ParseFileName(name string) (FileName, bool) {
	var n FileName
	for _, s := range []string{SuffixDeleted, SuffixCleaned, SuffixSwap, SuffixPart} {
		if strings.HasSuffix(name, s) {
			n.Suffix = s
			name = strings.TrimSuffix(name, s)
			break
		}
	}
	dot := strings.IndexByte(name, '.')
	if dot < 0 {
		return n, false
	}
	stem, ext := name[:dot], name[dot:]
	for k, e := range kindExt {
		if e == ext {
			n.Kind = k
		}
	}
	if n.Kind == KindUnknown {
		return n, false
	}
	if n.Kind == KindCheckpoint {
		off, ep, ok := strings.Cut(stem, "-")
		if !ok || len(off) != OffsetDigits || len(ep) != 10 {
			return n, false
		}
		o, err1 := parseDigits(off)
		e, err2 := parseDigits(ep)
		if err1 != nil || err2 != nil || e > 1<<31-1 {
			return n, false
		}
		n.BaseOffset, n.Epoch = o, int32(e)
		return n, true
	}
	if n.Suffix == SuffixPart || len(stem) != OffsetDigits {
		return n, false
	}
	o, err := parseDigits(stem)
	if err != nil {
		return n, false
	}
	n.BaseOffset = o
	return n, true
}

func parseDigits(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a digit: %q", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// Partition directory suffixes (core/.../log/LocalLog.scala, LogFileUtils.java).
const (
	DirSuffixDelete = "-delete"
	DirSuffixFuture = "-future"
	DirSuffixStray  = "-stray"
)

// DirName is a parsed partition directory name: topic-N, or
// topic-N.<32 hex uuid><suffix> for -delete, -future and -stray dirs.
type DirName struct {
	Topic     string
	Partition int32
	UniqueID  string // the uuid of a renamed dir, "" for a live dir
	Suffix    string // "", DirSuffixDelete, DirSuffixFuture or DirSuffixStray
}

// String is the directory name.
func (d DirName) String() string {
	s := fmt.Sprintf("%s-%d", d.Topic, d.Partition)
	if d.Suffix != "" {
		s += "." + d.UniqueID + d.Suffix
	}
	return s
}

var renamedDir = regexp.MustCompile(`^(\S+)-(\d+)\.([0-9a-f]{32})(-delete|-future|-stray)$`)

// ParseDirName parses a partition directory name. Live dirs must be exactly
// topic-N with a legal topic name; renamed dirs may carry a truncated topic
// (Kafka caps the name at 255 characters), so only the form is checked.
func ParseDirName(name string) (DirName, bool) {
	if m := renamedDir.FindStringSubmatch(name); m != nil {
		p, err := strconv.ParseInt(m[2], 10, 32)
		if err != nil {
			return DirName{}, false
		}
		return DirName{Topic: m[1], Partition: int32(p), UniqueID: m[3], Suffix: m[4]}, true
	}
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return DirName{}, false
	}
	ps := name[i+1:]
	if len(ps) > 1 && ps[0] == '0' {
		return DirName{}, false
	}
	p, err := parseDigits(ps)
	if err != nil || p > 1<<31-1 {
		return DirName{}, false
	}
	topic := name[:i]
	if ValidateTopic(topic) != nil {
		return DirName{}, false
	}
	return DirName{Topic: topic, Partition: int32(p)}, true
}

// MaxTopicLength is Kafka's limit on topic name length (Topic.MAX_NAME_LENGTH).
const MaxTopicLength = 249

// ValidateTopic applies Kafka's topic name rules (common/internals/Topic.java):
// 1-249 characters of [a-zA-Z0-9._-], and not "." or "..". Names that pass are
// safe to use as one path element.
func ValidateTopic(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("illegal topic name %q", t)
	}
	if len(t) > MaxTopicLength {
		return fmt.Errorf("topic name %.40q... is %d characters, over Kafka's %d", t, len(t), MaxTopicLength)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("illegal character %q in topic name %q", c, t)
		}
	}
	return nil
}
