package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/segvault/segvault/internal/miniotest"
)

// The baselines run as child processes of benchrun, exactly like the
// segvault binary, so CPU time and peak RSS are the kernel's rusage of that
// one process for both sides of a comparison.
//
//	benchrun -child put -endpoint HOST:PORT -bucket B -list FILE -concurrency N
//	benchrun -child get -endpoint HOST:PORT -bucket B -list FILE -dest DIR -concurrency N
//
//	benchrun -child onepass -list FILE      (the one-pass floor, onepass.go)
//	benchrun -child fsync -dest DIR         (fsync every file and dir under DIR)
//
// FILE holds one "path<TAB>key" line per object (get: "key<TAB>size").

// baselinePartSize and baselineThreads match the agent's S3 store (16 MiB
// parts, two parts of one object in flight).
const (
	baselinePartSize = 16 << 20
	baselineThreads  = 2
)

func childMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "child: mode missing")
		return 2
	}
	mode := args[0]
	fs := flag.NewFlagSet("child "+mode, flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "")
	bucket := fs.String("bucket", "", "")
	list := fs.String("list", "", "")
	dest := fs.String("dest", "", "")
	conc := fs.Int("concurrency", 2, "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	switch mode {
	case "onepass":
		return childOnePass(*list)
	case "fsync":
		return childFsync(*dest)
	}
	cl, err := minio.New(*endpoint, &minio.Options{Creds: credentials.NewStaticV4(miniotest.AccessKey, miniotest.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines, err := readLines(*list)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	var job func(a, b string) (int64, error)
	switch mode {
	case "put":
		job = func(path, key string) (int64, error) {
			f, err := os.Open(path)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return 0, err
			}
			_, err = cl.PutObject(ctx, *bucket, key, f, fi.Size(), minio.PutObjectOptions{PartSize: baselinePartSize, NumThreads: baselineThreads})
			return fi.Size(), err
		}
	case "get":
		job = func(key, _ string) (int64, error) {
			obj, err := cl.GetObject(ctx, *bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return 0, err
			}
			defer obj.Close()
			p := filepath.Join(*dest, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return 0, err
			}
			f, err := os.Create(p)
			if err != nil {
				return 0, err
			}
			n, err := io.Copy(f, obj)
			return n, errors.Join(err, f.Close())
		}
	default:
		fmt.Fprintln(os.Stderr, "child: unknown mode", mode)
		return 2
	}
	work := make(chan [2]string)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	for i := 0; i < max(*conc, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range work {
				n, err := job(w[0], w[1])
				mu.Lock()
				total += n
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", w[0], err))
				}
				mu.Unlock()
			}
		}()
	}
	for _, l := range lines {
		a, b, _ := strings.Cut(l, "\t")
		work <- [2]string{a, b}
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(total)
	return 0
}

// childOnePass runs the one-pass floor over the listed files on one
// goroutine and prints "raw zstd stored" byte counts.
func childOnePass(list string) int {
	lines, err := readLines(list)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var paths []string
	for _, l := range lines {
		p, _, _ := strings.Cut(l, "\t")
		paths = append(paths, p)
	}
	fl, err := newOnePassFloor()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := fl.files(paths, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(r.Raw, r.Zstd, r.Stored)
	return 0
}

// childFsync fsyncs every regular file under dir, then every directory
// (what a restore that is durable when it returns must do at least).
func childFsync(dir string) int {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return fsyncPath(p)
	})
	for i := len(dirs) - 1; i >= 0 && err == nil; i-- {
		err = fsyncPath(dirs[i])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// childResult is what the kernel says about one finished child process.
type childResult struct {
	Wall   time.Duration
	CPU    time.Duration // user + system
	MaxRSS int64         // bytes: peak VmHWM

	ServerCPU time.Duration // MinIO's CPU time over the same interval
	SysBusy   float64       // fraction of all the machine's CPU time that was busy over the interval (/proc/stat)
	Stdout    string
	Stderr    string
}

// runChild runs a command to completion and returns its rusage.
func (h *harness) runChild(ctx context.Context, name string, args ...string) (childResult, error) {
	return h.runChildEnv(ctx, nil, name, args...)
}

// runChildEnv is runChild with extra environment variables.
func (h *harness) runChildEnv(ctx context.Context, env []string, name string, args ...string) (childResult, error) {
	var res childResult
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	srv0 := procCPU(h.srv.PID())
	busy0, total0 := sysBusy()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%s: %w", filepath.Base(name), err)
	}
	// Peak RSS is the child's own VmHWM, sampled until it exits: wait4's
	// ru_maxrss cannot be used, because Linux starts a child's maxrss at
	// the high-water mark of the mm it had before exec (the parent's).
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var hwm int64
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			if v := vmHWM(cmd.Process.Pid); v > hwm {
				hwm = v
			}
			select {
			case <-stop:
				peak <- hwm
				return
			case <-tk.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	res.Wall = time.Since(t0)
	res.MaxRSS = <-peak
	res.ServerCPU = procCPU(h.srv.PID()) - srv0
	if busy1, total1 := sysBusy(); total1 > total0 {
		res.SysBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	res.Stdout, res.Stderr = out.String(), errb.String()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if err != nil {
		tail := res.Stderr
		if len(tail) > 4000 {
			tail = "..." + tail[len(tail)-4000:]
		}
		return res, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args[:min(len(args), 3)], " "), err, tail)
	}
	return res, nil
}

// self is this program, for baseline child processes.
func self() (string, error) { return os.Executable() }

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const clkTck = 100                       // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// newBucket creates a fresh bucket on the MinIO server.
func (h *harness) newBucket(ctx context.Context, what string) (string, error) {
	h.bucketMu.Lock()
	h.bucketSeq++
	name := fmt.Sprintf("bench-%02d-%s", h.bucketSeq, what)
	h.bucketMu.Unlock()
	return name, h.srv.MakeBucket(ctx, name)
}

// removeBucket deletes a bucket and everything in it, to keep the disk
// footprint of a full run bounded.
func (h *harness) removeBucket(ctx context.Context, bucket string) {
	cl := h.srv.Client()
	objs := cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range cl.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		_ = e
	}
	_ = cl.RemoveBucket(ctx, bucket)
}

// s3Flags are the store flags pointing segvault at a MinIO bucket.
func (h *harness) s3Flags(bucket string) []string {
	return []string{"--bucket", "s3://" + bucket, "--s3-endpoint", h.srv.Endpoint(), "--s3-insecure", "--s3-path-style",
		"--s3-region", "us-east-1", "--s3-access-key", miniotest.AccessKey, "--s3-secret-key", miniotest.SecretKey}
}

// writeList writes a child's work list.
func writeList(p string, lines []string) error {
	return os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// vmHWM is a live process's peak resident set size (VmHWM), 0 if gone.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
