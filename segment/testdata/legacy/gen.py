"""Generate the legacy (magic 0/1) segment fixtures in this directory.

Kafka 4 cannot write magic 0/1 any more and the real-broker fixtures have
none, so these files are built with a real client library's encoder:
kafka-python's LegacyRecordBatchBuilder (and DefaultRecordBatchBuilder for the
v2 batches of mixed.log), with its own codec functions (gzip, xerial snappy,
lz4 frame, and lz4_encode_old_kafka for Kafka's pre-0.10 broken LZ4 header
checksum). Only the fields a broker assigns on append are set here, exactly
where the broker sets them:

* log offsets. Plain messages get their absolute offset. A compressed
  wrapper's offset is the absolute offset of its last inner message. Inner
  offsets are absolute for magic 0 (the broker recompresses v0 sets with
  assigned offsets) and relative 0..n-1 for magic 1 (KIP-31, as the producer
  writes them); v2 base offsets are written into the first 8 bytes, which the
  CRC does not cover (DefaultRecordBatch.setLastOffset).
* the v1 wrapper timestamp: the largest inner timestamp (CreateTime) or the
  broker's append time with the timestamp-type bit set (LogAppendTime), as
  LogValidator does in place (LegacyRecordBatch.setMaxTimestamp).
* the v2 partition leader epoch (bytes 12-15, outside the CRC).

Wrappers are written with the builder's own _encode_msg, so every CRC is
computed by kafka-python. Run: python3 gen.py (needs kafka-python, python-snappy,
lz4, xxhash). expected.json lists every record each file must decode to.
"""

import json
import struct
import sys

from kafka.codec import gzip_encode, lz4_encode, lz4_encode_old_kafka, snappy_encode
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}
LOG_APPEND_TIME = 0x08
T0 = 1262304000000  # 2010-01-01, when these formats were current


class BrokerWrapperBuilder(LegacyRecordBatchBuilder):
    """LegacyRecordBatchBuilder whose wrapper carries the broker-assigned
    offset and timestamp instead of the producer's placeholders (0, 0)."""

    def __init__(self, magic, codec, wrapper_offset, wrapper_ts, attrs=0):
        super().__init__(magic=magic, compression_type=codec, batch_size=1 << 30)
        self.wrapper_offset = wrapper_offset
        self.wrapper_ts = wrapper_ts
        self.attrs = attrs

    def _maybe_compress(self):
        data = bytes(self._buffer)
        if self._compression_type == self.CODEC_GZIP:
            compressed = gzip_encode(data)
        elif self._compression_type == self.CODEC_SNAPPY:
            compressed = snappy_encode(data)
        elif self._magic == 0:
            compressed = lz4_encode_old_kafka(data)
        else:
            compressed = lz4_encode(data)
        self._buffer = bytearray(self.size_in_bytes(0, timestamp=0, key=None, value=compressed))
        self._encode_msg(start_pos=0, offset=self.wrapper_offset, timestamp=self.wrapper_ts, key=None,
                         value=compressed, attributes=self._compression_type | self.attrs)
        return True


def record(i, magic):
    """The i-th test record: varied keys, a null key, an empty key, a tombstone."""
    key = b"key-%d" % (i % 4)
    value = (b"legacy value %d " % i) * (1 + i % 3)
    if i % 5 == 1:
        key = None
    if i % 5 == 2:
        value = None
    if i % 7 == 3:
        key = b""
    ts = -1 if magic == 0 else T0 + 1000 * i + (37 if i % 4 == 2 else 0)
    return key, value, ts


def hexb(b):
    return None if b is None else b.hex()


class Segment:
    def __init__(self, base):
        self.buf = bytearray()
        self.next = base
        self.base = base
        self.records = []

    def plain(self, magic, n):
        for _ in range(n):
            key, value, ts = record(self.next, magic)
            b = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 30)
            b.append(self.next, timestamp=ts, key=key, value=value)
            self.buf += b.build()
            self.records.append({"offset": self.next, "timestamp": ts, "key": hexb(key), "value": hexb(value)})
            self.next += 1

    def wrapper(self, magic, codec, n, log_append_time=None):
        recs = [record(self.next + j, magic) for j in range(n)]
        last = self.next + n - 1
        attrs, wts = 0, -1
        if magic == 1:
            wts = max(ts for _, _, ts in recs)
            if log_append_time is not None:
                attrs, wts = LOG_APPEND_TIME, log_append_time
        b = BrokerWrapperBuilder(magic, CODECS[codec], last, wts, attrs)
        for j, (key, value, ts) in enumerate(recs):
            b.append(self.next + j if magic == 0 else j, timestamp=ts, key=key, value=value)
        self.buf += b.build()
        for j, (key, value, ts) in enumerate(recs):
            eff = wts if (magic == 1 and log_append_time is not None) else ts
            self.records.append({"offset": self.next + j, "timestamp": eff, "key": hexb(key), "value": hexb(value)})
        self.next += n

    def v2(self, codec, n, leader_epoch=3):
        b = DefaultRecordBatchBuilder(magic=2, compression_type=CODECS[codec], is_transactional=False,
                                      producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
        recs = [record(self.next + j, 1) for j in range(n)]
        for j, (key, value, ts) in enumerate(recs):
            b.append(j, timestamp=ts, key=key, value=value, headers=[("h", b"%d" % j)])
        raw = bytearray(b.build())
        struct.pack_into(">q", raw, 0, self.next)          # base offset, set by the broker
        struct.pack_into(">i", raw, 12, leader_epoch)      # partition leader epoch, set by the broker
        self.buf += raw
        for j, (key, value, ts) in enumerate(recs):
            self.records.append({"offset": self.next + j, "timestamp": ts, "key": hexb(key), "value": hexb(value),
                                 "headers": [["h", (b"%d" % j).hex()]]})
        self.next += n


def main():
    out = {}

    def save(name, seg):
        with open(name, "wb") as f:
            f.write(seg.buf)
        out[name] = {"base_offset": seg.base, "records": seg.records}

    for magic in (0, 1):
        s = Segment(0)
        s.plain(magic, 7)
        save("v%d-none.log" % magic, s)
        for codec in ("gzip", "snappy", "lz4"):
            s = Segment(0)
            s.wrapper(magic, codec, 5)
            s.plain(magic, 2)
            s.wrapper(magic, codec, 1)
            s.wrapper(magic, codec, 12)
            save("v%d-%s.log" % (magic, codec), s)

    # A v1 LogAppendTime wrapper, in a segment whose name-base is 100.
    s = Segment(100)
    s.wrapper(1, "gzip", 4, log_append_time=T0 + 999999)
    s.plain(1, 1)
    save("v1-logappendtime.log", s)

    # A partition whose message format was upgraded v0 -> v1 -> v2 mid-segment.
    s = Segment(0)
    s.plain(0, 2)
    s.wrapper(0, "snappy", 3)
    s.plain(1, 2)
    s.wrapper(1, "lz4", 3)
    s.v2("snappy", 4)
    s.v2("gzip", 3)
    s.v2("none", 2)
    save("mixed.log", s)

    with open("expected.json", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
