// Command pkgtest is packaging/test-install.sh's helper: it plays the Kafka
// broker whose log dir the packaged agent archives, creates the test
// buckets, and checks the archive against what the broker rolled. It is a
// test tool only: nothing in the product uses it.
//
//	pkgtest broker   -dir D [-seconds N] [-uid U -gid G] [-umask 027] [-group-write] -ready F -result F
//	pkgtest mkbucket -endpoint host:port -bucket B -access-key K -secret-key S
//	pkgtest check    -result F -plan P    (P: `segvault restore --dry-run --json` output)
//	pkgtest freeport                      (prints a free TCP port on 127.0.0.1)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/segvault/segvault/internal/brokersim"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pkgtest broker|mkbucket|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "broker":
		err = broker(os.Args[2:])
	case "mkbucket":
		err = mkbucket(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	case "freeport":
		err = freeport()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkgtest:", err)
		os.Exit(1)
	}
}

// rolled is what the broker left on disk: per partition, the base offsets of
// its rolled segments (every segment but the active one).
type rolled struct {
	ClusterID  string             `json:"cluster_id"`
	NodeID     int32              `json:"node_id"`
	Partitions map[string][]int64 `json:"partitions"` // "topic-partition" -> bases
}

func (r *rolled) count() int {
	n := 0
	for _, b := range r.Partitions {
		n += len(b)
	}
	return n
}

// broker writes a log dir with a simulated broker (real franz-go batches, as
// Kafka lays them out), keeps producing and rolling for -seconds, and writes
// what it rolled to -result. -uid/-gid make the files the kafka user's, with
// -umask as Kafka's service would have it.
func broker(args []string) error {
	fs := flag.NewFlagSet("broker", flag.ExitOnError)
	dir := fs.String("dir", "", "log dir to create")
	seconds := fs.Int("seconds", 0, "keep producing and rolling this long")
	uid := fs.Int("uid", -1, "run as this uid (the kafka user)")
	gid := fs.Int("gid", -1, "run as this gid (the kafka group)")
	umask := fs.String("umask", "027", "umask (octal) for the broker's files")
	groupWrite := fs.Bool("group-write", false, "make files 0660 and dirs 0770, as Kafka does under UMask=0007")
	ready := fs.String("ready", "", "file written once the initial data is on disk")
	result := fs.String("result", "", "file for the JSON list of rolled segments")
	fs.Parse(args)
	if *dir == "" || *result == "" {
		return errors.New("broker: -dir and -result are required")
	}
	m, err := strconv.ParseUint(*umask, 8, 32)
	if err != nil {
		return fmt.Errorf("broker: -umask: %w", err)
	}
	syscall.Umask(int(m))
	if *gid >= 0 {
		if err := syscall.Setgroups([]int{*gid}); err != nil {
			return fmt.Errorf("broker: setgroups: %w", err)
		}
		if err := syscall.Setgid(*gid); err != nil {
			return fmt.Errorf("broker: setgid: %w", err)
		}
	}
	if *uid >= 0 {
		if err := syscall.Setuid(*uid); err != nil {
			return fmt.Errorf("broker: setuid: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, err := brokersim.Start(ctx, brokersim.Config{
		Dir: *dir, NodeID: 1, SegmentBytes: 64 << 10, Seed: 7, ForgetRecords: true,
		Topics: []brokersim.TopicSpec{
			{Name: "orders", Partitions: 3, Codec: "zstd", Idempotent: true, Records: 3000, ValueBytes: 200},
			{Name: "clicks", Partitions: 2, Codec: "none", Records: 2000, ValueBytes: 120},
			{Name: "payments", Partitions: 1, Codec: "lz4", Transactional: true, AbortEvery: 4, Records: 1500},
		},
	})
	if err != nil {
		return err
	}
	share := func() error {
		if !*groupWrite {
			return nil
		}
		return filepath.WalkDir(*dir, func(p string, d iofs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, iofs.ErrNotExist) {
					return nil // deleted meanwhile
				}
				return err
			}
			mode := iofs.FileMode(0o660)
			if d.IsDir() {
				mode = 0o770
			}
			if err := os.Chmod(p, mode); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return err
			}
			return nil
		})
	}
	if err := share(); err != nil {
		return errors.Join(err, b.Close())
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o644); err != nil {
			return errors.Join(err, b.Close())
		}
	}
	deadline := time.Now().Add(time.Duration(*seconds) * time.Second)
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		for _, t := range []string{"orders", "clicks"} {
			if _, err := b.Append(ctx, t, 150); err != nil {
				return errors.Join(err, b.Close())
			}
		}
		if i%4 == 3 { // as segment.ms would: roll every partition now and then
			for _, t := range b.Result().Topics {
				for _, p := range t.Partitions {
					if err := b.Roll(t.Name, p.Partition); err != nil {
						return errors.Join(err, b.Close())
					}
				}
			}
		}
		if err := share(); err != nil {
			return errors.Join(err, b.Close())
		}
		time.Sleep(500 * time.Millisecond)
	}
	res := b.Result()
	if err := errors.Join(b.Close(), share()); err != nil {
		return err
	}
	out := rolled{ClusterID: res.ClusterID, NodeID: res.NodeID, Partitions: map[string][]int64{}}
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			if n := len(p.Segments); n > 1 {
				out.Partitions[fmt.Sprintf("%s-%d", p.Topic, p.Partition)] = p.Segments[:n-1]
			}
		}
	}
	data, _ := json.MarshalIndent(out, "", "  ")
	fmt.Printf("broker: %d partitions, %d rolled segments\n", len(out.Partitions), out.count())
	return os.WriteFile(*result, data, 0o644)
}

func mkbucket(args []string) error {
	fs := flag.NewFlagSet("mkbucket", flag.ExitOnError)
	endpoint := fs.String("endpoint", "", "host:port (plain HTTP)")
	bucket := fs.String("bucket", "", "bucket to create")
	access := fs.String("access-key", "", "")
	secret := fs.String("secret-key", "", "")
	fs.Parse(args)
	c, err := minio.New(*endpoint, &minio.Options{Creds: credentials.NewStaticV4(*access, *secret, "")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.MakeBucket(ctx, *bucket, minio.MakeBucketOptions{})
}

// check compares the broker's rolled segments with the restore plan of the
// archive: every rolled segment must be archived. Exit status 1 and a count
// of the missing ones otherwise (the caller retries while the agent works).
func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	resultFile := fs.String("result", "", "pkgtest broker -result output")
	planFile := fs.String("plan", "", "segvault restore --dry-run --json output")
	fs.Parse(args)
	var want rolled
	if err := readJSON(*resultFile, &want); err != nil {
		return err
	}
	var plan struct {
		Cluster    string `json:"cluster"`
		Partitions []struct {
			Topic     string
			Partition int32
			Segments  []struct{ Base int64 }
		} `json:"partitions"`
	}
	if err := readJSON(*planFile, &plan); err != nil {
		return err
	}
	have := map[string]map[int64]bool{}
	for _, p := range plan.Partitions {
		k := fmt.Sprintf("%s-%d", p.Topic, p.Partition)
		if have[k] == nil {
			have[k] = map[int64]bool{}
		}
		for _, s := range p.Segments {
			have[k][s.Base] = true
		}
	}
	var missing []string
	for k, bases := range want.Partitions {
		for _, b := range bases {
			if !have[k][b] {
				missing = append(missing, fmt.Sprintf("%s@%d", k, b))
			}
		}
	}
	sort.Strings(missing)
	if plan.Cluster != want.ClusterID {
		return fmt.Errorf("archive holds cluster %q, the broker is %q", plan.Cluster, want.ClusterID)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d rolled segments not archived yet (first: %s)", len(missing), want.count(), missing[0])
	}
	fmt.Printf("check: all %d rolled segments of %d partitions are in the archive\n", want.count(), len(want.Partitions))
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func freeport() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}
