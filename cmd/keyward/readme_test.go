package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/cli"
	"github.com/keyward/keyward/server/servertest"
)

// The README is a contract with new users: its walk-through runs as written
// against the real program, started as `make run` starts it (keyward serve with
// the data dir ./keyward-data, from a fresh directory), and every answer it shows
// is what the server answers. The one substitution is the REST address: the
// program listens on a free port here rather than 8080.
func TestReadmeWalkThrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walk-through needs %s (.ci/run installs it): %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	steps := walkThrough(t, string(readme))
	require.GreaterOrEqual(t, len(steps), 10, "the walk-through was found")

	dir := t.TempDir()
	httpAddr := startFromReadme(t, dir)
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, s := range steps {
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n%s\n", i, strings.ReplaceAll(s.command, "http://127.0.0.1:8080", "http://"+httpAddr))
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "the walk-through failed:\n%s", out.String())

	outputs := strings.Split(out.String(), "\n@@step ")
	checked := 0
	for i, s := range steps {
		var got string
		for _, o := range outputs {
			if n, rest, ok := strings.Cut(o, "\n"); ok && n == fmt.Sprint(i) {
				got = rest
			}
		}
		for _, want := range s.expect {
			// protojson varies its whitespace: a pair matches with any after its colon.
			name, value, _ := strings.Cut(want, ":")
			pattern := regexp.QuoteMeta(name) + `:\s*` + regexp.QuoteMeta(value)
			if !strings.HasPrefix(want, `"`) {
				pattern = regexp.QuoteMeta(want) // words shown after an HTTP status
			}
			assert.Regexp(t, pattern, got, "step %d, %q: the README shows %s", i, firstLine(s.command), want)
			checked++
		}
	}
	assert.GreaterOrEqual(t, checked, 8, "the README's answers were checked")
	t.Logf("%d steps run, %d shown answers checked", len(steps), checked)
}

// step is one command of the walk-through and the parts of its answer the README
// shows in the comment after it.
type step struct {
	command string
	expect  []string
}

// jsonPair matches a "name":value pair of a shown answer (a string, number or bool).
var jsonPair = regexp.MustCompile(`"[a-z_]+":\s*("(?:[^"\\]|\\.)*"|true|false|-?\d+)`)

// walkThrough splits the README's "Walk-through with curl" block into steps.
func walkThrough(t *testing.T, readme string) []step {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "## Walk-through with curl")
	require.True(t, ok, "the README has a walk-through")
	_, rest, ok = strings.Cut(rest, "```sh\n")
	require.True(t, ok)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)

	var steps []step
	var cmd strings.Builder
	for _, line := range strings.Split(block, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
		case strings.HasPrefix(trimmed, "#"):
			// A comment after a command shows (part of) its answer: the JSON pairs,
			// or, for an error, the words after the HTTP status.
			if len(steps) == 0 || cmd.Len() > 0 {
				continue
			}
			shown := strings.TrimSpace(strings.TrimPrefix(trimmed, "#"))
			last := &steps[len(steps)-1]
			if pairs := jsonPair.FindAllString(shown, -1); len(pairs) > 0 {
				for _, p := range pairs {
					last.expect = append(last.expect, compactPair(p))
				}
			}
		default:
			// A command, possibly continued over several lines; a comment at its end
			// (after two spaces and #) shows the answer.
			code, comment, _ := strings.Cut(line, "  #")
			cmd.WriteString(code + "\n")
			if strings.HasSuffix(strings.TrimSpace(code), "\\") || strings.Count(cmd.String(), "'")%2 == 1 {
				continue
			}
			s := step{command: cmd.String()}
			if words := strings.Fields(comment); len(words) > 1 && isHTTPStatus(words[0]) {
				s.expect = append(s.expect, strings.Join(words[1:], " "))
			}
			steps = append(steps, s)
			cmd.Reset()
		}
	}
	require.Zero(t, cmd.Len(), "an unfinished command at the end of the walk-through")
	return steps
}

// compactPair writes a pair the way the JSON answers do: no space after the colon.
func compactPair(p string) string {
	name, value, _ := strings.Cut(p, ":")
	return name + ":" + strings.TrimSpace(value)
}

func isHTTPStatus(s string) bool { return len(s) == 3 && s[0] >= '1' && s[0] <= '5' }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// startFromReadme runs the program as `make run` does, in dir, on free ports it
// picks itself, and returns the REST address it serves on.
func startFromReadme(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", "./keyward-data",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-format", "text")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KEYWARD_TEST_AS_MAIN=1")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	serving := regexp.MustCompile(`msg=serving .*? http_addr=(\S+)`)
	var addr string
	require.Eventually(t, func() bool {
		if m := serving.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	}, 60*time.Second, 20*time.Millisecond, "keyward did not start: %s", logs)
	return addr
}

// lockedBuffer collects a process's output for reading while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The README's "Command line" section shows keyward's answers after a `$ keyward`
// line: each is what the program prints, the list of commands included.
func TestReadmeCommandLine(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "\n## Command line\n")
	require.True(t, ok, "the README has a Command line section")
	section, _, _ = strings.Cut(section, "\n## ")

	kw := servertest.Start(t)
	t.Setenv("KEYWARD_SERVER", kw.Server.GRPCAddr())
	t.Setenv("KEYWARD_API_KEY", kw.AdminKey)
	shown := 0
	for _, block := range strings.Split(section, "```text\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		for _, example := range strings.Split(block, "$ keyward")[1:] {
			command, answer, _ := strings.Cut(example, "\n")
			var got strings.Builder
			cli.Run(strings.Fields(command), strings.NewReader(""), &got, &got)
			if elided, rest, ok := strings.Cut(answer, "...\n"); ok && elided == "" {
				answer = rest // the README shows only the end of a long answer
			}
			assert.Contains(t, got.String(), strings.TrimSpace(answer), "the README shows keyward%s answering", command)
			shown++
		}
	}
	assert.GreaterOrEqual(t, shown, 3, "the README's answers were found")
}
