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
		// A YAML syntax error names the file and the line: "config PATH:N: YAML ...".
		if rest, ok := strings.CutPrefix(msg, "config "+p+":"); ok && len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
			if !strings.Contains(rest, ": YAML") {
				t.Fatalf("a positioned error that is not a YAML error: %q", msg)
			}
			return
		}
		// Every other refusal: "config PATH: problem", or "config PATH:" and
		// then one problem per line, each naming its key.
		rest, ok := strings.CutPrefix(msg, "config "+p+":")
		if !ok || (!strings.HasPrefix(rest, "\n") && !strings.HasPrefix(rest, " ")) {
			t.Fatalf("error does not name the file: %q", msg)
		}
		for _, part := range strings.Split(rest, "\n") {
			part = strings.TrimSpace(part)
			if part != "" && !keyRE.MatchString(part) {
				t.Fatalf("an error that names no key: %q (in %q)", part, msg)
			}
		}
	})
}
