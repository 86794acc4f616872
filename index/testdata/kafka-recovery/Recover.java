// Recover runs Apache Kafka's own segment recovery (LogSegment.recover with a
// ProducerStateManager and a LeaderEpochFileCache, as LogLoader does for a
// dir without clean shutdown) over the .log files in a directory and leaves
// the files Kafka writes: trimmed .index/.timeindex, .txnindex, one producer
// snapshot per segment end, leader-epoch-checkpoint. index's golden tests
// compare Rebuild, BuildProducerSnapshot and DeriveLeaderEpochs with them.
//
// Usage: java -cp '<kafka libs>/*:<classes>' Recover DIR INDEX_INTERVAL BASE...
// Written for Kafka 3.9 (kafka-storage 3.9.2). For 4.x, recover() takes the
// LeaderEpochFileCache itself instead of an Optional; with that one change
// Kafka 4.4.0 writes byte-identical files for every case here (checked by
// hand when the goldens were made).
// Regenerate with: SEGVAULT_KAFKA_LIBS=<libs dir> go test ./index/ -run TestKafkaRecoveryGoldens -update-goldens
import java.io.File;
import java.util.Optional;
import java.util.Properties;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.server.util.KafkaScheduler;
import org.apache.kafka.storage.internals.checkpoint.LeaderEpochCheckpointFile;
import org.apache.kafka.storage.internals.epoch.LeaderEpochFileCache;
import org.apache.kafka.storage.internals.log.LogConfig;
import org.apache.kafka.storage.internals.log.LogDirFailureChannel;
import org.apache.kafka.storage.internals.log.LogSegment;
import org.apache.kafka.storage.internals.log.ProducerStateManager;
import org.apache.kafka.storage.internals.log.ProducerStateManagerConfig;

public class Recover {
    public static void main(String[] args) throws Exception {
        File dir = new File(args[0]);
        Properties props = new Properties();
        props.put("index.interval.bytes", args[1]);
        LogConfig cfg = new LogConfig(props);
        TopicPartition tp = new TopicPartition("t", 0);
        KafkaScheduler sched = new KafkaScheduler(1);
        sched.startup();
        LeaderEpochFileCache cache = new LeaderEpochFileCache(tp,
            new LeaderEpochCheckpointFile(new File(dir, "leader-epoch-checkpoint"), new LogDirFailureChannel(1)), sched);
        ProducerStateManager psm = new ProducerStateManager(tp, dir, 900000,
            new ProducerStateManagerConfig(86400000, false), Time.SYSTEM);
        for (int i = 2; i < args.length; i++) {
            long base = Long.parseLong(args[i]);
            LogSegment seg = LogSegment.open(dir, base, cfg, Time.SYSTEM, true, 0, false, "");
            int truncated = seg.recover(psm, Optional.of(cache));
            if (truncated != 0) {
                throw new IllegalStateException("recovery truncated " + truncated + " bytes of segment " + base);
            }
            psm.takeSnapshot();
            seg.close();
        }
        sched.shutdown();
    }
}
