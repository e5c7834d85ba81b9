//go:build linux

package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The disk-full test runs Badger in child processes (this test binary,
// re-executed with diskFullChildEnv naming a step), because the failure it
// guards against is a SIGBUS that kills the whole process: in the child it
// is observed as the child's death instead of ending the test run.
const (
	diskFullChildEnv = "KVSESSION_DISKFULL_CHILD"
	diskFullDirEnv   = "KVSESSION_DISKFULL_DIR"
	// requireDiskFullEnv makes the test fail, not skip, when it cannot
	// mount its small filesystem (CI sets it; it runs as root).
	requireDiskFullEnv = "KVSESSION_REQUIRE_DISKFULL"

	diskFullFSSize = 64 << 20 // the size the server died on
	diskFullFiller = 16 << 20 // freed once writes are refused
)

// TestDiskFull reproduces finding 8 on a 64 MB tmpfs: a Store filling its
// filesystem must refuse writes with an error instead of dying, keep
// serving reads, take writes again once space is freed, lose no write it
// acknowledged, and, reopened on a full filesystem, open or fail with an
// error rather than die.
func TestDiskFull(t *testing.T) {
	if os.Getenv(diskFullChildEnv) != "" {
		t.Skip("running as a child")
	}
	mnt := mountSmallFS(t, diskFullFSSize)
	filler := filepath.Join(mnt, "filler")

	// Step 1: fill. The child writes a filler file, then sessions until
	// the Store refuses them; reads the sessions back; removes the filler,
	// writes again, and exits without closing the Store.
	out := runDiskFullChild(t, "fill", mnt)
	acked := ackedKeys(out)
	for _, want := range []string{"refused ", "reads ok", "resumed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("fill child printed no %q line:\n%s", want, tail(out))
		}
	}
	t.Logf("fill: %d writes acknowledged; %s", len(acked), firstLine(out, "refused "))
	if len(acked) < 1000 {
		t.Fatalf("only %d writes acknowledged before the disk was full: the test did not fill the store", len(acked))
	}

	// Step 2: reopen with the filesystem full to the last byte. Without
	// the guard, Badger dies of SIGBUS there, bootstrapping its fresh
	// memtable file (the crash loop); the test shows it, for the
	// record, but does not depend on it.
	fillUp(t, filler)
	if out, crashed := runChild(t, "reopen-unguarded", mnt); crashed {
		t.Logf("reopen on a full filesystem without the guard: the child died, as Badger v4.9.6 does:\n%s", firstFrames(out))
	} else {
		t.Logf("reopen on a full filesystem without the guard: the child survived: %s", firstLine(out, "open"))
	}
	out = runDiskFullChild(t, "reopen", mnt)
	t.Logf("reopen on a full filesystem: %s", firstLine(out, "open"))
	if !strings.Contains(out, "opened") && !strings.Contains(out, "open refused") {
		t.Fatalf("reopen child neither opened nor reported an error:\n%s", tail(out))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	// Step 3: every acknowledged write is there.
	checkFile := filepath.Join(mnt, "acked")
	if err := os.WriteFile(checkFile, []byte(strings.Join(acked, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	out = runDiskFullChild(t, "verify", mnt)
	if want := fmt.Sprintf("verified %d", len(acked)); !strings.Contains(out, want) {
		t.Fatalf("verify child did not print %q:\n%s", want, tail(out))
	}
}

// mountSmallFS mounts a tmpfs of size bytes in a temporary directory and
// unmounts it when the test ends. It skips the test if it cannot, unless
// requireDiskFullEnv is set.
func mountSmallFS(t *testing.T, size int) string {
	t.Helper()
	unable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(requireDiskFullEnv) == "1" {
			t.Fatalf(format+" (and %s=1)", append(args, requireDiskFullEnv)...)
		}
		t.Skipf(format+"; set %s=1 to fail instead", append(args, requireDiskFullEnv)...)
	}
	if os.Geteuid() != 0 {
		unable("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		unable("mounting a %d-byte tmpfs: %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			// A child still holding files open: detach it instead.
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return mnt
}

// runDiskFullChild runs step in a child process and returns its output. The
// child must exit with status 0: a signal (SIGBUS) or a failure fails the
// test.
func runDiskFullChild(t *testing.T, step, mnt string) string {
	t.Helper()
	out, err := runChildErr(t, step, mnt)
	// The Go runtime turns a SIGBUS in Go code into a fatal error and exit
	// status 2, so the signal shows in the output, not the wait status.
	if i := strings.Index(out, "signal SIGBUS"); i >= 0 {
		t.Fatalf("%s child died of SIGBUS after %d acknowledged writes:\n%s", step, len(ackedKeys(out)), crashReport(out[i:]))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("%s child died of %v after %d acknowledged writes:\n%s", step, ws.Signal(), len(ackedKeys(out)), tail(out))
		}
	}
	if err != nil {
		t.Fatalf("%s child: %v\n%s", step, err, tail(out))
	}
	return out
}

// runChild runs step in a child process and reports whether it crashed
// (a signal, or the Go runtime's fatal error for one).
func runChild(t *testing.T, step, mnt string) (out string, crashed bool) {
	t.Helper()
	out, err := runChildErr(t, step, mnt)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return out, true
		}
	}
	return out, strings.Contains(out, "signal SIGBUS") || strings.Contains(out, "unexpected fault address")
}

func runChildErr(t *testing.T, step, mnt string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestDiskFullChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), diskFullChildEnv+"="+step, diskFullDirEnv+"="+mnt)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	return buf.String(), err
}

// firstFrames is a crash's signal line and the first Badger frames of the
// goroutine that faulted.
func firstFrames(out string) string {
	i := strings.Index(out, "signal SIGBUS")
	if i < 0 {
		return tail(out)
	}
	var b strings.Builder
	n := 0
	for line := range strings.Lines(out[i:]) {
		if n == 0 || strings.Contains(line, "badger/v4") || strings.Contains(line, "ristretto") {
			b.WriteString(line)
			if n++; n > 10 {
				break
			}
		}
	}
	return b.String()
}

// TestDiskFullChild is the child's side of TestDiskFull; it does nothing
// unless run as one.
func TestDiskFullChild(t *testing.T) {
	step := os.Getenv(diskFullChildEnv)
	if step == "" {
		t.Skip("only run by TestDiskFull")
	}
	mnt := os.Getenv(diskFullDirEnv)
	dir, filler := filepath.Join(mnt, "db"), filepath.Join(mnt, "filler")
	switch step {
	case "fill":
		childFill(t, dir, filler)
	case "reopen", "reopen-unguarded":
		opts := Options{Dir: dir}
		if step == "reopen-unguarded" {
			opts.MinFreeSpace = -1
		}
		s, err := Open(opts)
		if err != nil {
			fmt.Printf("open refused: %v\n", err)
			return
		}
		fmt.Println("opened")
		if _, err := s.Get(t.Context(), diskFullKey(0)); err != nil {
			fmt.Printf("read after opening on a full disk: %v\n", err)
		}
		if err := s.Close(); err != nil {
			fmt.Printf("close: %v\n", err)
		}
	case "verify":
		childVerify(t, dir, filepath.Join(mnt, "acked"))
	default:
		t.Fatalf("unknown step %q", step)
	}
}

// diskFullKey and diskFullValue make the test's sessions: every fourth
// value is 1 KB, which goes to Badger's value log, the rest 200 bytes,
// which stay in its LSM tree and write-ahead log. A value is derived from
// its key, so that a reader can check it.
func diskFullKey(i int) string { return fmt.Sprintf("session-%07d", i) }

func diskFullValue(key string) []byte {
	n := 200
	if i, _ := strconv.Atoi(strings.TrimPrefix(key, "session-")); i%4 == 0 {
		n = 1024
	}
	sum := sha256.Sum256([]byte(key))
	return bytes.Repeat(sum[:], n/len(sum)+1)[:n]
}

func childFill(t *testing.T, dir, filler string) {
	ctx := t.Context()
	writeFile(t, filler, diskFullFiller)
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		next    int
		refused error
		acked   []int
	)
	// Four writers, so that writes are batched as on a server. Each prints
	// its acknowledged keys at once: should the child die, the parent
	// still knows them.
	write := func(limit int, stopOnRefusal bool) error {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				for {
					mu.Lock()
					if next >= limit || (stopOnRefusal && refused != nil) {
						mu.Unlock()
						return
					}
					i := next
					next++
					mu.Unlock()
					key := diskFullKey(i)
					err := s.Set(ctx, key, diskFullValue(key), 0)
					mu.Lock()
					if err == nil {
						acked = append(acked, i)
						fmt.Printf("ack %s\n", key)
					} else if refused == nil {
						refused = err
					}
					mu.Unlock()
					if err != nil && !stopOnRefusal {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	// 64 MB cannot hold 400,000 sessions of these sizes (over 100 MB).
	if err := write(400000, true); err != nil {
		t.Fatal(err)
	}
	if refused == nil {
		t.Fatal("400,000 writes on a 64 MB filesystem and none refused")
	}
	fmt.Printf("refused %d writes in: %v\n", next, refused)
	if !errors.Is(refused, ErrDiskFull) {
		t.Errorf("a write on the full disk returned %v, want ErrDiskFull", refused)
	}
	// Still refusing, and still reading.
	if err := s.Set(ctx, "one more", []byte("x"), 0); !errors.Is(err, ErrDiskFull) {
		t.Errorf("Set on the full disk: %v, want ErrDiskFull", err)
	}
	for _, i := range acked {
		key := diskFullKey(i)
		v, err := s.Get(ctx, key)
		if err != nil || !bytes.Equal(v, diskFullValue(key)) {
			t.Fatalf("Get(%s) on the full disk = %d bytes, %v", key, len(v), err)
		}
	}
	fmt.Println("reads ok")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// With the filler gone there is room for this many more.
	mu.Lock()
	refused = nil
	mu.Unlock()
	if err := write(next+2000, false); err != nil {
		t.Fatalf("Set after space was freed: %v", err)
	}
	fmt.Println("resumed")
	// Exit as a crash would, without closing: what was acknowledged must
	// be in Badger's write-ahead log already, and the next Open replays it.
	os.Exit(0)
}

func childVerify(t *testing.T, dir, ackedFile string) {
	data, err := os.ReadFile(ackedFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := strings.Fields(string(data))
	for _, key := range keys {
		v, err := s.Get(t.Context(), key)
		if err != nil || !bytes.Equal(v, diskFullValue(key)) {
			t.Fatalf("acknowledged write %s after reopening: %d bytes, %v", key, len(v), err)
		}
	}
	fmt.Printf("verified %d\n", len(keys))
}

// writeFile writes n bytes of data to path, so that they take space on a
// tmpfs (a sparse file would not).
func writeFile(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, zeros{}, int64(n)); err != nil {
		t.Fatal(err)
	}
}

// fillUp writes to path until the filesystem has no space left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = io.Copy(f, zeros{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the filesystem: %v, want ENOSPC", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	if free := st.Bavail * uint64(st.Bsize); free >= 4096 {
		t.Fatalf("%d bytes still free after filling", free)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// crashReport is the start of a Go crash from the signal line: the
// faulting goroutine's stack comes first.
func crashReport(s string) string {
	return s[:min(len(s), 4000)]
}

func ackedKeys(out string) []string {
	var keys []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func firstLine(out, prefix string) string {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// tail is the end of a child's output, without its acknowledgements.
func tail(out string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "ack ") {
			b.WriteString(line)
		}
	}
	s := b.String()
	if len(s) > 8000 {
		s = "…" + s[len(s)-8000:]
	}
	return s
}
