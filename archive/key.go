package archive

import (
	"strconv"
	"strings"
	"time"
)

// KeyKind is what an archive object is, as its key says.
type KeyKind int

// The kinds of key ParseKey tells apart.
const (
	KeyUnknown          KeyKind = iota
	KeySegmentManifest          // .../segments/<base>/<broker>-<id>/manifest.json
	KeySegmentData              // .../segments/<base>/<broker>-<id>/<file>
	KeySnapshotManifest         // .../snapshots/<off>-<epoch>/<broker>-<id>/manifest.json
	KeySnapshotData             // .../snapshots/<off>-<epoch>/<broker>-<id>/<file>
	KeyGap                      // .../gaps/<base>-<broker>.json
	KeyLogDir                   // <cluster>/brokers/<broker>/logdirs/<dir>/<time>.json
	KeyTailPack                 // <cluster>/brokers/<broker>/tails/<seq>-<id>.pack (v2)
	KeyTailManifest             // <cluster>/brokers/<broker>/tails/<seq>-<id>.json (v2)
	KeyClaim                    // <cluster>/claims/<topic>/<partition>.json (v2)
	KeyDivergence               // .../divergences/<base>-<broker>.json (v2)
)

var keyKindNames = [...]string{"unknown", "segment-manifest", "segment-data", "snapshot-manifest", "snapshot-data",
	"gap-marker", "logdir-capture", "tail-pack", "tail-manifest", "claim", "divergence-report"}

func (k KeyKind) String() string {
	if k < 0 || int(k) >= len(keyKindNames) {
		return "unknown"
	}
	return keyKindNames[k]
}

// KeyInfo is what an object key says, before the object is read. Fields a
// kind does not have are zero.
type KeyInfo struct {
	Kind          KeyKind
	Version       string // LayoutVersion ("v1") or LayoutVersionV2 ("v2")
	Cluster       string
	Topic         string
	Partition     int32
	TopicID       string
	BaseOffset    int64 // segment base, snapshot offset, gap base
	SnapshotEpoch int32
	Broker        int32
	// VersionID names the version of a segment or snapshot: the content id
	// (v1) or the upload id (v2); for tail packs and manifests, the upload id.
	VersionID   string
	File        string    // data objects: the object's name in its version dir (with its extension)
	LogDir      string    // log-dir captures: the dir's key element
	CaptureTime time.Time // log-dir captures
	Seq         int64     // tail packs and manifests
}

// IsManifest reports whether the key is a segment or KRaft snapshot
// manifest (both decode as SegmentManifest).
func (k KeyInfo) IsManifest() bool {
	return k.Kind == KeySegmentManifest || k.Kind == KeySnapshotManifest
}

// IsData reports whether the key is a data object of a segment or snapshot version.
func (k KeyInfo) IsData() bool { return k.Kind == KeySegmentData || k.Kind == KeySnapshotData }

// Ref is the SegmentRef of a segment, snapshot or gap key (ContentID holds
// VersionID).
func (k KeyInfo) Ref() SegmentRef {
	return SegmentRef{Cluster: k.Cluster, Topic: k.Topic, Partition: k.Partition, TopicID: k.TopicID,
		BaseOffset: k.BaseOffset, Broker: k.Broker, ContentID: k.VersionID}
}

// VersionDir is the common prefix of a segment or snapshot version's
// objects (where its manifest and data objects live), "" for other kinds.
func (k KeyInfo) VersionDir(l Layout) string {
	r := k.Ref()
	switch {
	case k.Kind == KeySegmentManifest || k.Kind == KeySegmentData:
		if k.Version == LayoutVersionV2 {
			return l.SegmentDirV2(r)
		}
		return l.SegmentDir(r)
	case k.Kind == KeySnapshotManifest || k.Kind == KeySnapshotData:
		if k.Version == LayoutVersionV2 {
			return l.SnapshotDirV2(r, k.SnapshotEpoch)
		}
		return l.SnapshotDir(r, k.SnapshotEpoch)
	}
	return ""
}

// ParseKey classifies an object key of either layout version under l's
// prefix. It returns false for a key outside the layout (another prefix,
// not segvault's) or one whose elements do not parse: empty, "." or ".."
// elements, numbers out of range or not in the form the key builders write
// (zero-padded offsets, no leading zeros elsewhere), a version id that is
// not letters and digits. A key it accepts is the one the builders make
// from the KeyInfo.
func ParseKey(l Layout, key string) (KeyInfo, bool) {
	var k KeyInfo
	rest, ok := strings.CutPrefix(key, l.Prefix)
	if !ok {
		return k, false
	}
	ver, rest, ok := strings.Cut(rest, "/")
	if !ok || ver != LayoutVersion && ver != LayoutVersionV2 {
		return k, false
	}
	k.Version = ver
	f := strings.Split(rest, "/")
	for _, e := range f {
		if e == "" || e == "." || e == ".." {
			return KeyInfo{}, false
		}
	}
	if len(f) < 4 {
		return KeyInfo{}, false
	}
	k.Cluster = f[0]
	v2 := ver == LayoutVersionV2
	switch {
	case f[1] == "topics" && len(f) >= 7:
		ok = k.parseTopicKey(f[2:])
	case f[1] == "brokers":
		ok = k.parseBrokerKey(f[2:], v2)
	case f[1] == "claims" && v2 && len(f) == 4:
		k.Kind, k.Topic = KeyClaim, f[2]
		p, found := strings.CutSuffix(f[3], ".json")
		k.Partition, ok = parseInt32(p)
		ok = ok && found
	default:
		ok = false
	}
	if !ok {
		return KeyInfo{}, false
	}
	return k, true
}

// parseTopicKey parses <topic>/<partition>/<topic-id>/<what>/...
func (k *KeyInfo) parseTopicKey(f []string) bool {
	var ok bool
	k.Topic, k.TopicID = f[0], f[2]
	if k.Partition, ok = parseInt32(f[1]); !ok {
		return false
	}
	switch f[3] {
	case "segments", "snapshots":
		if len(f) != 7 {
			return false
		}
		if f[3] == "segments" {
			k.Kind = KeySegmentManifest
			k.BaseOffset, ok = parsePadded(f[4], 20)
		} else {
			k.Kind = KeySnapshotManifest
			off, epoch, found := strings.Cut(f[4], "-")
			k.BaseOffset, ok = parsePadded(off, 20)
			e, eok := parsePadded(epoch, 10)
			k.SnapshotEpoch = int32(e)
			ok = ok && eok && found && e <= 1<<31-1
		}
		if !ok {
			return false
		}
		b, id, found := strings.Cut(f[5], "-")
		if k.Broker, ok = parseInt32(b); !ok || !found || !isVersionID(id) {
			return false
		}
		k.VersionID = id
		if f[6] != ManifestName {
			k.File = f[6]
			k.Kind++ // the data kind follows its manifest kind
		}
		return true
	case "gaps", "divergences":
		if len(f) != 5 || f[3] == "divergences" && k.Version != LayoutVersionV2 {
			return false
		}
		name, found := strings.CutSuffix(f[4], ".json")
		b, broker, found2 := strings.Cut(name, "-")
		var ok2 bool
		k.BaseOffset, ok = parsePadded(b, 20)
		k.Broker, ok2 = parseInt32(broker)
		k.Kind = KeyGap
		if f[3] == "divergences" {
			k.Kind = KeyDivergence
		}
		return found && found2 && ok && ok2
	}
	return false
}

// parseBrokerKey parses <broker>/logdirs/<dir>/<time>.json and (v2)
// <broker>/tails/<seq>-<id>.(pack|json).
func (k *KeyInfo) parseBrokerKey(f []string, v2 bool) bool {
	var ok bool
	if k.Broker, ok = parseInt32(f[0]); !ok {
		return false
	}
	switch {
	case f[1] == "logdirs" && len(f) == 4:
		name, found := strings.CutSuffix(f[3], ".json")
		t, err := time.Parse(CaptureTimeFormat, name)
		if !found || err != nil || t.Format(CaptureTimeFormat) != name {
			return false
		}
		k.Kind, k.LogDir, k.CaptureTime = KeyLogDir, f[2], t
		return true
	case f[1] == "tails" && len(f) == 3 && v2:
		name, ext := f[2], ""
		if n, found := strings.CutSuffix(name, ".pack"); found {
			name, ext = n, "pack"
		} else if n, found := strings.CutSuffix(name, ".json"); found {
			name, ext = n, "json"
		} else {
			return false
		}
		seq, id, found := strings.Cut(name, "-")
		if k.Seq, ok = parsePadded(seq, 20); !ok || !found || !isVersionID(id) {
			return false
		}
		k.VersionID = id
		k.Kind = KeyTailPack
		if ext == "json" {
			k.Kind = KeyTailManifest
		}
		return true
	}
	return false
}

// parsePadded parses a non-negative decimal zero-padded to width digits,
// as the key builders write offsets, epochs and sequence numbers.
func parsePadded(s string, width int) (int64, bool) {
	if len(s) != width {
		return 0, false
	}
	return parseDigits(s)
}

// parseInt64 parses a non-negative decimal in canonical form (digits only,
// no sign, no spaces, no leading zero) that fits an int64, as the key
// builders write partitions and broker ids.
func parseInt64(s string) (int64, bool) {
	if s == "" || len(s) > 20 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	return parseDigits(s)
}

func parseDigits(s string) (int64, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// isVersionID reports whether s can be a content or upload id: letters
// and digits only.
func isVersionID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// parseInt32 is parseInt64 for int32 values.
func parseInt32(s string) (int32, bool) {
	n, ok := parseInt64(s)
	if !ok || n > 1<<31-1 {
		return 0, false
	}
	return int32(n), true
}

// GuessKey parses a key whose prefix is not known (a path into a local
// store, a listing from the bucket's root): it tries every "v1/" or "v2/"
// element of key as the layout root.
func GuessKey(key string) (Layout, KeyInfo, bool) {
	for i := 0; i < len(key); i++ {
		if i > 0 && key[i-1] != '/' {
			continue
		}
		if s := key[i:]; strings.HasPrefix(s, LayoutVersion+"/") || strings.HasPrefix(s, LayoutVersionV2+"/") {
			l := Layout{Prefix: key[:i]}
			if k, ok := ParseKey(l, key); ok {
				return l, k, true
			}
		}
	}
	return Layout{}, KeyInfo{}, false
}
