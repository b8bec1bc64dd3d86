package imapserver_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestTranscripts replays the raw sessions in testdata/imap/*.txt, each on a
// fresh server. The format, one item per line:
//
//	# comment
//	C: text          sent with CRLF; consecutive C: lines go in one packet
//	S: regexp        the next server line must match (whole line)
//	S* regexp        skip server lines until one matches
//	!ingest ID USER [urgent]   store a task assigned to USER (title "Task ID")
//	!sleep DURATION
//	!closed          the server must close the connection
func TestTranscripts(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("..", "testdata", "imap", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, f)
		})
	}
}

// transcriptConfig is the config transcripts expect.
func transcriptConfig(t testing.TB) *config.Config {
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	cfg.Limits.IMAPLiteralBytes = 64 << 10
	return cfg
}

func runTranscript(t *testing.T, path string) {
	runTranscriptOn(t, path, testsvc.New(t, testsvc.Options{Config: transcriptConfig(t)}))
}

func runTranscriptOn(t *testing.T, path string, svc *bridge.Service) {
	ts := serve(t, svc, Options{Version: "1.0-test"})
	rc := ts.raw(t)

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			rc.send(batch...)
			batch = nil
		}
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "C: "):
			batch = append(batch, strings.TrimPrefix(line, "C: "))
		case strings.HasPrefix(line, "S: "):
			flush()
			re := "^(?:" + strings.TrimPrefix(line, "S: ") + ")$"
			got, err := rc.line(5 * time.Second)
			if err != nil {
				t.Fatalf("%s:%d: waiting for %q: %v", path, n, re, err)
			}
			if !regexp.MustCompile(re).MatchString(got) {
				t.Fatalf("%s:%d: got %q, want %q", path, n, got, re)
			}
		case strings.HasPrefix(line, "S* "):
			flush()
			re := regexp.MustCompile("^(?:" + strings.TrimPrefix(line, "S* ") + ")$")
			for {
				got, err := rc.line(5 * time.Second)
				if err != nil {
					t.Fatalf("%s:%d: waiting for %q: %v", path, n, re, err)
				}
				if re.MatchString(got) {
					break
				}
			}
		case strings.HasPrefix(line, "!ingest "):
			flush()
			args := strings.Fields(strings.TrimPrefix(line, "!ingest "))
			in := task(args[0], "Task "+args[0], args[1])
			if len(args) > 2 && args[2] == "urgent" {
				in.Priority = "urgent"
			}
			testsvc.Ingest(t, ts.svc, in)
		case strings.HasPrefix(line, "!sleep "):
			flush()
			d, err := time.ParseDuration(strings.TrimPrefix(line, "!sleep "))
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
			time.Sleep(d)
		case line == "!closed":
			flush()
			for {
				got, err := rc.line(5 * time.Second)
				if err != nil {
					if strings.Contains(err.Error(), "timeout") {
						t.Fatalf("%s:%d: connection still open", path, n)
					}
					break
				}
				if !strings.HasPrefix(got, "* BYE") && got != "" {
					t.Fatalf("%s:%d: got %q before the close", path, n, got)
				}
			}
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
}
