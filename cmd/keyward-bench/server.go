package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// server is a Keyward under test, a child process serving on loopback.
type server struct {
	binary, dataDir                 string
	env, extra                      []string
	cmd                             *exec.Cmd
	grpcAddr, httpAddr, metricsAddr string
	adminKey                        string
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		panic(err)
	}
	return addr
}

// startServer starts keyward on the embedded store in dataDir, with env added to
// its environment and extra flags, and waits until it serves and its bootstrap admin key is written.
func startServer(binary, dataDir string, env []string, extra ...string) (*server, error) {
	s := &server{binary: binary, dataDir: dataDir, env: env, extra: extra}
	return s, s.start()
}

func (s *server) start() error {
	s.grpcAddr, s.httpAddr, s.metricsAddr = freeAddr(), freeAddr(), freeAddr()
	args := append([]string{"serve", "--data-dir", s.dataDir, "--grpc-addr", s.grpcAddr,
		"--http-addr", s.httpAddr, "--metrics-addr", s.metricsAddr, "--auth-failure-burst", "1000000"}, s.extra...)
	s.cmd = exec.Command(s.binary, args...)
	s.cmd.Env = append(os.Environ(), s.env...)
	// The server logs at its default level (info) to a file beside its store.
	logFile, err := os.OpenFile(s.dataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }() // the started server holds its own descriptor
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if key, err := os.ReadFile(filepath.Join(s.dataDir, "bootstrap-admin.key")); err == nil && len(key) > 0 {
			if resp, err := http.Get("http://" + s.httpAddr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					s.adminKey = strings.TrimSpace(string(key))
					return nil
				}
			}
		}
	}
	s.stop()
	return fmt.Errorf("keyward did not become ready within 60 s; its log:\n%s", s.logTail())
}

// restart stops the server and starts it again on the same store.
func (s *server) restart() error {
	s.stop()
	return s.start()
}

// stop interrupts the server (a graceful shutdown that flushes the audit buffer)
// and waits for it to exit.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// cpuSeconds reads the server's user+system CPU time from /proc.
func (s *server) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ = 100 on Linux)
}

// peakRSSMiB reads the server's peak resident memory (VmHWM).
func (s *server) peakRSSMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// metric scrapes /metrics and returns the sum of every sample of the named
// series (all label sets).
func (s *server) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("no series %s in /metrics", name)
	}
	return sum, sc.Err()
}

// liveHeapMiB is the heap that was live after the server's last garbage
// collection.
func (s *server) liveHeapMiB() (float64, error) {
	v, err := s.metric("go_gc_heap_live_bytes")
	return v / (1 << 20), err
}

// logTail is the end of the server's log, for error messages.
func (s *server) logTail() string {
	b, _ := os.ReadFile(s.dataDir + ".log")
	return string(b[max(0, len(b)-4096):])
}

// cpuProfile records the server's CPU profile for d into file, through the
// profiler listener the server was started with (--pprof-addr).
func (s *server) cpuProfile(file string, d time.Duration) error {
	return s.profile("profile", file, d)
}

// profile records the server's profile of kind (a net/http/pprof profile
// name: "profile" for CPU, "allocs" for the allocations) over d into file.
func (s *server) profile(kind, file string, d time.Duration) error {
	addr := ""
	for i, a := range s.extra {
		if a == "--pprof-addr" && i+1 < len(s.extra) {
			addr = s.extra[i+1]
		}
	}
	if addr == "" {
		return fmt.Errorf("the server runs without --pprof-addr")
	}
	seconds := max(1, int(d.Round(time.Second)/time.Second))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close() // the copy's error is the one to report
		return err
	}
	return f.Close()
}
