package fuzz

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/config"
)

// keyRE is how a validation error starts: the key it is about
// ("users[1].name: ...", "unknown key htpp", "tls: ...").
// or "'http.listen' expected type 'string', ..." from the decoder.
var keyRE = regexp.MustCompile(`^(unknown keys? |'?[a-z_]+(\[\d+\])?(\.[a-z_0-9]+(\[\d+\])?)*(\.[^:\s']+)?'?[: ])`)

// FuzzConfigLoad loads arbitrary YAML. Properties: no panic, and a refusal
// says where: a YAML position (line) for a syntax error, else the key.
func FuzzConfigLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "config", "*.yaml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("users: [{name: a, password_hash: x}]\nlimits: {task_labels: -1}\n"))
	f.Add([]byte("http: {listen: [1, 2]}\n"))
	f.Add([]byte("\t- :\n"))
	dir := f.TempDir()
	// Keys absent from the file must not come from the environment of
	// whoever runs the fuzzer.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DUEBRIDGE_") {
			f.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	f.Fuzz(func(t *testing.T, yaml []byte) {
		p := filepath.Join(dir, "duebridge.yaml")
		if err := os.WriteFile(p, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(p)
		if err == nil {
			return
		}
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, "parse config "+p+": "); ok {
			if !strings.Contains(rest, "line ") {
				t.Fatalf("a YAML error without its position: %q", msg)
			}
			return
		}
		rest, ok := strings.CutPrefix(msg, "config "+p+": ")
		if !ok {
			t.Fatalf("error does not name the file: %q", msg)
		}
		for _, part := range strings.Split(rest, "; ") {
			if !keyRE.MatchString(part) {
				t.Fatalf("an error that names no key: %q (in %q)", part, msg)
			}
		}
	})
}
