package index

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// KRaft metadata records (the values of the records in __cluster_metadata-0
// segments and <offset>-<epoch>.checkpoint snapshots).
//
// Each record value is framed by ApiMessageAndVersion's serde
// (server-common/.../serialization/AbstractApiMessageSerde.java):
//
//	uvarint frame version (1) | uvarint api key | uvarint record version | body
//
// The body is the record's "flexible" encoding: int32/int64 big-endian, uuid
// 16 bytes, compact arrays and strings (uvarint length+1, 0 = null), and a
// trailing tagged-field section (uvarint count, then uvarint tag, uvarint
// size, bytes each). Schemas, from apache/kafka
// metadata/src/main/resources/common/metadata/:
//
//	TopicRecord.json (2) v0:             Name string, TopicId uuid
//	PartitionRecord.json (3) v0-2:       PartitionId int32, TopicId uuid, Replicas []int32, Isr []int32,
//	                                     RemovingReplicas []int32, AddingReplicas []int32, Leader int32,
//	                                     LeaderEpoch int32, PartitionEpoch int32, Directories []uuid (v1+);
//	                                     tagged: 0 LeaderRecoveryState, 1 EligibleLeaderReplicas, 2 LastKnownElr (v2+)
//	PartitionChangeRecord.json (5) v0-2: PartitionId int32, TopicId uuid; tagged: 0 Isr, 1 Leader
//	                                     (-2 = unchanged, -1 = none), 2 Replicas, 3 RemovingReplicas,
//	                                     4 AddingReplicas, 5 LeaderRecoveryState, later tags skipped
//	RemoveTopicRecord.json (9) v0:       TopicId uuid
//	RegisterBrokerRecord.json (0) v0-4:  BrokerId int32, IsMigratingZkBroker bool (v2+), IncarnationId uuid,
//	                                     BrokerEpoch int64, EndPoints [], Features [], Rack string?,
//	                                     Fenced bool, InControlledShutdown bool (v1+);
//	                                     tagged: 0 LogDirs []uuid (v3+), CordonedLogDirs (v4+)
//	UnregisterBrokerRecord.json (1):     BrokerId int32, BrokerEpoch int64
//	FenceBrokerRecord.json (7):          Id int32, Epoch int64
//	UnfenceBrokerRecord.json (8):        Id int32, Epoch int64
//	BrokerRegistrationChangeRecord.json (17) v0-3: BrokerId int32, BrokerEpoch int64;
//	                                     tagged: 0 Fenced int8 (-1 unfenced, 0 no change, 1 fenced)
//
// Every other record type, and a known type at a version newer than the one
// decoded here, is skipped and counted (ClusterMetadata.Skipped): new Kafka
// releases add records the archiver does not need.

// Metadata record api keys (the "apiKey" of each schema file).
const (
	MetaRegisterBroker           = 0
	MetaUnregisterBroker         = 1
	MetaTopic                    = 2
	MetaPartition                = 3
	MetaPartitionChange          = 5
	MetaFenceBroker              = 7
	MetaUnfenceBroker            = 8
	MetaRemoveTopic              = 9
	MetaBrokerRegistrationChange = 17
)

// Highest record versions decoded; newer ones are skipped and counted.
const (
	maxTopicVersion           = 0
	maxPartitionVersion       = 2
	maxPartitionChangeVersion = 2 // v1, v2 only add tagged fields
	maxRemoveTopicVersion     = 1
	maxRegisterBrokerVersion  = 4 // v4 (Kafka 4.3) adds a tagged CordonedLogDirs
	maxBrokerIDEpochVersion   = 3 // Unregister/Fence/Unfence v0; BrokerRegistrationChange v3 adds a tagged field
	metadataFrameVersion      = 1
	uuidSize                  = 16
	noLeader                  = -1
	leaderUnchanged           = -2 // PartitionChangeRecord.Leader default
)

// ErrMetadataRecord is matched by every malformed metadata record error.
var ErrMetadataRecord = errors.New("malformed metadata record")

// TopicID is a Kafka topic id (a uuid).
type TopicID [uuidSize]byte

// String is the form Kafka prints and partition.metadata stores: URL-safe
// base64 without padding (22 characters).
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// PartitionKey names a partition by topic id.
type PartitionKey struct {
	TopicID   TopicID
	Partition int32
}

// PartitionAssignment is a partition's state per the metadata: who holds
// replicas and who leads.
type PartitionAssignment struct {
	Topic          string // "" if no TopicRecord was seen for the id
	TopicID        TopicID
	Partition      int32
	Replicas       []int32 // preferred order
	ISR            []int32
	Leader         int32 // -1: no leader
	LeaderEpoch    int32
	PartitionEpoch int32
}

// BrokerState is a broker's registration per the metadata.
type BrokerState struct {
	ID     int32
	Epoch  int64
	Fenced bool
}

// ClusterMetadata is the part of a KRaft metadata image segvault needs,
// built by applying records in log order (Apply) or by LoadClusterMetadata.
type ClusterMetadata struct {
	TopicNames map[TopicID]string
	TopicIDs   map[string]TopicID
	Partitions map[PartitionKey]*PartitionAssignment
	Brokers    map[int32]*BrokerState

	// Records counts applied metadata records; Skipped counts skipped ones
	// by "api key N v M" (unknown type or newer version).
	Records int64
	Skipped map[string]int

	lastOffset int64 // last applied log record's offset, -1 if none
}

// NewClusterMetadata returns an empty image.
func NewClusterMetadata() *ClusterMetadata {
	return &ClusterMetadata{
		TopicNames: map[TopicID]string{},
		TopicIDs:   map[string]TopicID{},
		Partitions: map[PartitionKey]*PartitionAssignment{},
		Brokers:    map[int32]*BrokerState{},
		Skipped:    map[string]int{},
		lastOffset: -1,
	}
}

// Partition returns topic/partition's assignment.
func (m *ClusterMetadata) Partition(topic string, partition int32) (PartitionAssignment, bool) {
	id, ok := m.TopicIDs[topic]
	if !ok {
		return PartitionAssignment{}, false
	}
	p, ok := m.Partitions[PartitionKey{id, partition}]
	if !ok {
		return PartitionAssignment{}, false
	}
	return *p, true
}

// BrokerLive reports whether the metadata shows broker id registered and
// unfenced; known is false when the metadata holds no registration for it.
func (m *ClusterMetadata) BrokerLive(id int32) (live, known bool) {
	b, ok := m.Brokers[id]
	if !ok {
		return false, false
	}
	return !b.Fenced, true
}

// metaReader is a bounds-checked decoder with a sticky error.
type metaReader struct {
	p   []byte
	off int
	err error
}

func (r *metaReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d of %d", ErrMetadataRecord, what, r.off, len(r.p))
	}
}

func (r *metaReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.p)-r.off < n {
		r.fail("truncated " + what)
		return nil
	}
	b := r.p[r.off : r.off+n]
	r.off += n
	return b
}

func (r *metaReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p[r.off:])
	if n <= 0 || v > 1<<31 {
		r.fail("bad unsigned varint " + what)
		return 0
	}
	r.off += n
	return v
}

func (r *metaReader) int8(what string) int8 {
	if b := r.take(1, what); b != nil {
		return int8(b[0])
	}
	return 0
}

func (r *metaReader) int16(what string) int16 {
	if b := r.take(2, what); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *metaReader) int32(what string) int32 {
	if b := r.take(4, what); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *metaReader) int64(what string) int64 {
	if b := r.take(8, what); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

func (r *metaReader) uuid(what string) (id TopicID) {
	copy(id[:], r.take(uuidSize, what))
	return id
}

// compactLen reads a compact length: -1 for null.
func (r *metaReader) compactLen(what string) int {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return 0
	}
	return int(n) - 1
}

func (r *metaReader) compactString(what string) (s string, null bool) {
	n := r.compactLen(what)
	if n < 0 {
		return "", true
	}
	return string(r.take(n, what)), false
}

// int32Array reads a compact []int32; nil for null, non-nil for empty.
func (r *metaReader) int32Array(what string) []int32 {
	n := r.compactLen(what)
	if r.err != nil || n < 0 {
		return nil
	}
	if n > (len(r.p)-r.off)/4 {
		r.fail("array longer than the record: " + what)
		return nil
	}
	a := make([]int32, n)
	for i := range a {
		a[i] = r.int32(what)
	}
	return a
}

func (r *metaReader) skipUUIDArray(what string) {
	if n := r.compactLen(what); n > 0 {
		if n > (len(r.p)-r.off)/uuidSize {
			r.fail("array longer than the record: " + what)
			return
		}
		r.take(n*uuidSize, what)
	}
}

// tags reads the tagged-field section, handing each field's bytes to fn
// (which may be nil). Unknown tags are skipped.
func (r *metaReader) tags(fn func(tag uint64, field *metaReader)) {
	n := r.uvarint("tagged field count")
	for i := uint64(0); i < n && r.err == nil; i++ {
		tag := r.uvarint("tag")
		size := r.uvarint("tagged field size")
		b := r.take(int(size), "tagged field")
		if r.err == nil && fn != nil {
			sub := &metaReader{p: b}
			fn(tag, sub)
			if sub.err != nil {
				r.err = fmt.Errorf("tag %d: %w", tag, sub.err)
			}
		}
	}
}

func (r *metaReader) end() {
	if r.err == nil && r.off != len(r.p) {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.p)-r.off))
	}
}

// Apply decodes one metadata record value and applies it. A record of an
// unknown type or newer version is counted in Skipped, not an error. A
// malformed record is an error wrapping ErrMetadataRecord and changes
// nothing.
func (m *ClusterMetadata) Apply(value []byte) error {
	r := &metaReader{p: value}
	frame := r.uvarint("frame version")
	key := r.uvarint("api key")
	ver := r.uvarint("record version")
	if r.err != nil {
		return r.err
	}
	if frame != metadataFrameVersion {
		return fmt.Errorf("%w: frame version %d, want %d", ErrMetadataRecord, frame, metadataFrameVersion)
	}
	var err error
	applied := true
	switch key {
	case MetaTopic:
		applied, err = m.applyTopic(r, ver)
	case MetaPartition:
		applied, err = m.applyPartition(r, ver)
	case MetaPartitionChange:
		applied, err = m.applyPartitionChange(r, ver)
	case MetaRemoveTopic:
		applied, err = m.applyRemoveTopic(r, ver)
	case MetaRegisterBroker:
		applied, err = m.applyRegisterBroker(r, ver)
	case MetaUnregisterBroker, MetaFenceBroker, MetaUnfenceBroker, MetaBrokerRegistrationChange:
		applied, err = m.applyBrokerChange(r, key, ver)
	default:
		applied = false
	}
	if err != nil {
		return fmt.Errorf("api key %d v%d: %w", key, ver, err)
	}
	if !applied {
		m.Skipped[fmt.Sprintf("api key %d v%d", key, ver)]++
		return nil
	}
	m.Records++
	return nil
}

func (m *ClusterMetadata) applyTopic(r *metaReader, ver uint64) (bool, error) {
	if ver > maxTopicVersion {
		return false, nil
	}
	name, null := r.compactString("Name")
	id := r.uuid("TopicId")
	r.tags(nil)
	r.end()
	if r.err == nil && null {
		r.fail("null topic name")
	}
	if r.err != nil {
		return false, r.err
	}
	if old, ok := m.TopicNames[id]; ok && old != name {
		delete(m.TopicIDs, old)
	}
	m.TopicNames[id] = name
	m.TopicIDs[name] = id
	for k, p := range m.Partitions {
		if k.TopicID == id {
			p.Topic = name
		}
	}
	return true, nil
}

func (m *ClusterMetadata) applyPartition(r *metaReader, ver uint64) (bool, error) {
	if ver > maxPartitionVersion {
		return false, nil
	}
	p := &PartitionAssignment{}
	p.Partition = r.int32("PartitionId")
	p.TopicID = r.uuid("TopicId")
	p.Replicas = r.int32Array("Replicas")
	p.ISR = r.int32Array("Isr")
	r.int32Array("RemovingReplicas")
	r.int32Array("AddingReplicas")
	p.Leader = r.int32("Leader")
	p.LeaderEpoch = r.int32("LeaderEpoch")
	p.PartitionEpoch = r.int32("PartitionEpoch")
	if ver >= 1 {
		r.skipUUIDArray("Directories")
	}
	r.tags(nil)
	r.end()
	if r.err != nil {
		return false, r.err
	}
	if p.Partition < 0 {
		return false, fmt.Errorf("%w: negative partition id %d", ErrMetadataRecord, p.Partition)
	}
	p.Topic = m.TopicNames[p.TopicID]
	m.Partitions[PartitionKey{p.TopicID, p.Partition}] = p
	return true, nil
}

func (m *ClusterMetadata) applyPartitionChange(r *metaReader, ver uint64) (bool, error) {
	if ver > maxPartitionChangeVersion {
		return false, nil
	}
	part := r.int32("PartitionId")
	id := r.uuid("TopicId")
	leader := int32(leaderUnchanged)
	var isr, replicas []int32
	r.tags(func(tag uint64, f *metaReader) {
		switch tag {
		case 0:
			isr = f.int32Array("Isr")
			f.end()
		case 1:
			leader = f.int32("Leader")
			f.end()
		case 2:
			replicas = f.int32Array("Replicas")
			f.end()
		}
	})
	r.end()
	if r.err != nil {
		return false, r.err
	}
	p, ok := m.Partitions[PartitionKey{id, part}]
	if !ok {
		// A change to a partition the image does not hold (records before
		// the snapshot were not read, or a torn log): nothing to change.
		m.Skipped["PartitionChangeRecord for an unknown partition"]++
		return true, nil
	}
	if isr != nil {
		p.ISR = isr
	}
	if replicas != nil {
		p.Replicas = replicas
	}
	if leader != leaderUnchanged {
		p.Leader = leader
		// PartitionChangeBuilder bumps the leader epoch on every leader
		// change; the record does not carry the new value.
		p.LeaderEpoch++
	}
	p.PartitionEpoch++
	return true, nil
}

func (m *ClusterMetadata) applyRemoveTopic(r *metaReader, ver uint64) (bool, error) {
	if ver > maxRemoveTopicVersion {
		return false, nil
	}
	id := r.uuid("TopicId")
	r.tags(nil)
	r.end()
	if r.err != nil {
		return false, r.err
	}
	if name, ok := m.TopicNames[id]; ok {
		if m.TopicIDs[name] == id {
			delete(m.TopicIDs, name)
		}
		delete(m.TopicNames, id)
	}
	for k := range m.Partitions {
		if k.TopicID == id {
			delete(m.Partitions, k)
		}
	}
	return true, nil
}

func (m *ClusterMetadata) applyRegisterBroker(r *metaReader, ver uint64) (bool, error) {
	if ver > maxRegisterBrokerVersion {
		return false, nil
	}
	b := &BrokerState{}
	b.ID = r.int32("BrokerId")
	if ver >= 2 {
		r.int8("IsMigratingZkBroker")
	}
	r.uuid("IncarnationId")
	b.Epoch = r.int64("BrokerEpoch")
	n := r.compactLen("EndPoints")
	for i := 0; i < n && r.err == nil; i++ {
		r.compactString("EndPoint.Name")
		r.compactString("EndPoint.Host")
		r.int16("EndPoint.Port")
		r.int16("EndPoint.SecurityProtocol")
		r.tags(nil)
	}
	n = r.compactLen("Features")
	for i := 0; i < n && r.err == nil; i++ {
		r.compactString("Feature.Name")
		r.int16("Feature.MinSupportedVersion")
		r.int16("Feature.MaxSupportedVersion")
		r.tags(nil)
	}
	r.compactString("Rack")
	b.Fenced = r.int8("Fenced") != 0
	if ver >= 1 {
		r.int8("InControlledShutdown")
	}
	r.tags(nil) // v3 LogDirs is tag 0 (seen in a real 3.7 snapshot)
	r.end()
	if r.err != nil {
		return false, r.err
	}
	m.Brokers[b.ID] = b
	return true, nil
}

func (m *ClusterMetadata) applyBrokerChange(r *metaReader, key, ver uint64) (bool, error) {
	if ver > maxBrokerIDEpochVersion {
		return false, nil
	}
	id := r.int32("BrokerId")
	epoch := r.int64("BrokerEpoch")
	fenced := int8(0)
	r.tags(func(tag uint64, f *metaReader) {
		if key == MetaBrokerRegistrationChange && tag == 0 {
			fenced = f.int8("Fenced")
			f.end()
		}
	})
	r.end()
	if r.err != nil {
		return false, r.err
	}
	b, ok := m.Brokers[id]
	if key == MetaUnregisterBroker {
		if ok && b.Epoch == epoch {
			delete(m.Brokers, id)
		}
		return true, nil
	}
	if !ok || b.Epoch != epoch {
		// A change for another incarnation: the controller ignores it too.
		return true, nil
	}
	switch {
	case key == MetaFenceBroker || fenced > 0:
		b.Fenced = true
	case key == MetaUnfenceBroker || fenced < 0:
		b.Fenced = false
	}
	return true, nil
}

// Clone returns a deep copy.
func (m *ClusterMetadata) Clone() *ClusterMetadata {
	c := NewClusterMetadata()
	c.Records, c.lastOffset = m.Records, m.lastOffset
	for k, v := range m.TopicNames {
		c.TopicNames[k] = v
	}
	for k, v := range m.TopicIDs {
		c.TopicIDs[k] = v
	}
	for k, v := range m.Partitions {
		p := *v
		p.Replicas = slices.Clone(v.Replicas)
		p.ISR = slices.Clone(v.ISR)
		c.Partitions[k] = &p
	}
	for k, v := range m.Brokers {
		b := *v
		c.Brokers[k] = &b
	}
	for k, v := range m.Skipped {
		c.Skipped[k] = v
	}
	return c
}
