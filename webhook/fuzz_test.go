package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// checkDelivery is the property every fuzzed delivery must keep: never a
// 5xx (every input here is deterministic), and a refused one leaves the
// store as it was.
func checkDelivery(t *testing.T, h http.Handler, svc *bridge.Service, source string, req *http.Request) {
	before := testsvc.StoreState(t, svc, source)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("status %d for a deterministic input: %s", rec.Code, rec.Body.String())
	}
	if rec.Code != http.StatusOK {
		if after := testsvc.StoreState(t, svc, source); after != before {
			t.Fatalf("refused (%d %s) but the store changed:\n%s\n---\n%s", rec.Code, rec.Body.String(), before, after)
		}
	}
}

func seedDir(f *testing.F, dir string, add func(name string, body []byte)) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "webhook", dir, "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in %s: %v", dir, err)
	}
	for _, p := range files {
		if filepath.Base(p) == "headers.json" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(filepath.Base(p), b)
	}
}

// FuzzGenericWebhook: any signed body through the real handler (decode,
// validation, ingest).
func FuzzGenericWebhook(f *testing.F) {
	seedDir(f, "", func(_ string, b []byte) { f.Add(b) })
	due := time.Now().UTC().AddDate(0, 0, 2)
	f.Add([]byte(`{"id":"x","title":"a\rb","labels":["c\nd"],"due":"` + due.Format("2006-01-02") + `T10:00:00Z"}`))
	f.Add([]byte(`[{"id":"x","title":"t","version":1},{"id":"x","title":"u"},{"id":"x","deleted":true}]`))
	svc := testsvc.New(f, testsvc.Options{})
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", NewHandler(svc, Options{}))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/hooks/tracker", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, Sign(testsvc.Secret, body))
		checkDelivery(t, mux, svc, "tracker", req)
	})
}

func fuzzTracker(f *testing.F, kind string) {
	seedDir(f, kind, func(name string, b []byte) {
		prefix, _, _ := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
		if v, ok := eventHeaderValues[kind][prefix]; ok {
			prefix = v
		}
		f.Add(prefix, b)
	})
	// The world of the tracker tests, built once per fuzz process.
	env := newTrackerEnv(f, kind)
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		mac256 := hmac.New(sha256.New, []byte(env.secret))
		mac256.Write(body)
		mac1 := hmac.New(sha1.New, []byte(env.secret))
		mac1.Write(body)
		repl := strings.NewReplacer("{event}", event, "{delivery}", newID(),
			"{hmac-sha256}", hex.EncodeToString(mac256.Sum(nil)), "{hmac-sha1}", hex.EncodeToString(mac1.Sum(nil)),
			"{token}", env.secret, "{uuid}", newID())
		req := httptest.NewRequest("POST", "/hooks/"+kind, bytes.NewReader(body))
		for k, v := range env.headers {
			req.Header.Set(k, repl.Replace(v))
		}
		checkDelivery(t, env.srv.Config.Handler, env.svc, kind, req)
	})
}

func FuzzGitHubWebhook(f *testing.F)  { fuzzTracker(f, "github") }
func FuzzGitLabWebhook(f *testing.F)  { fuzzTracker(f, "gitlab") }
func FuzzJiraWebhook(f *testing.F)    { fuzzTracker(f, "jira") }
func FuzzLinearWebhook(f *testing.F)  { fuzzTracker(f, "linear") }
func FuzzGiteaWebhook(f *testing.F)   { fuzzTracker(f, "gitea") }
func FuzzForgejoWebhook(f *testing.F) { fuzzTracker(f, "forgejo") }

// FuzzCloudEventsWebhook: any signed body in each CloudEvents mode
// (structured, batch, binary) through the real handler.
func FuzzCloudEventsWebhook(f *testing.F) {
	ev := `{"specversion":"1.0","id":"e1","source":"/ops","type":"t","data":{"id":"x","title":"t","version":1}}`
	f.Add(uint8(0), []byte(ev))
	f.Add(uint8(0), []byte(`{"specversion":"1.0","id":"e2","source":"/ops","type":"t","data":[{"id":"x","title":"u","version":2},{"id":"y","deleted":true}]}`))
	f.Add(uint8(0), []byte(`{"specversion":"1.0","id":"e3","source":"/ops","type":"t","data_base64":"e30="}`))
	due := time.Now().UTC().AddDate(0, 0, 2).Format("2006-01-02")
	f.Add(uint8(1), []byte(`[`+ev+`,{"specversion":"1.0","id":"e4","source":"/ops","type":"t","data":{"id":"x","due":"`+due+`"}}]`))
	f.Add(uint8(2), []byte(`{"id":"x","title":"t","version":3}`))
	f.Add(uint8(2), []byte(`[{"id":"x","title":"t"},{"id":"x","deleted":true}]`))
	svc := testsvc.New(f, testsvc.Options{})
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", NewHandler(svc, Options{}))
	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		req := httptest.NewRequest("POST", "/hooks/tracker", bytes.NewReader(body))
		switch mode % 3 {
		case 0:
			req.Header.Set("Content-Type", ceStructuredType)
		case 1:
			req.Header.Set("Content-Type", ceBatchType)
		case 2:
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("ce-specversion", "1.0")
			req.Header.Set("ce-id", newID())
			req.Header.Set("ce-source", "/fuzz")
			req.Header.Set("ce-type", "t")
		}
		req.Header.Set(SignatureHeader, Sign(testsvc.Secret, body))
		checkDelivery(t, mux, svc, "tracker", req)
	})
}
