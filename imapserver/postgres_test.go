package imapserver_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// pgEnv is the store suite's variable (store/store_test.go): a PostgreSQL
// URL the tests may create schemas in.
const pgEnv = "TEST_DUEBRIDGE_POSTGRES"

// pgService is a service on PostgreSQL, in a fresh schema dropped when the
// test ends; it skips the test unless TEST_DUEBRIDGE_POSTGRES is set.
func pgService(t *testing.T, cfg *config.Config) *bridge.Service {
	t.Helper()
	source := testsvc.PostgresSource(t, "imap")
	return testsvc.Open(t, cfg, bridge.Options{Logger: testLogger(t)}, func(o store.Options) (store.Store, error) {
		return store.Open(context.Background(), store.Postgres, source, o)
	})
}

// The store methods IMAP added run on PostgreSQL too: the transcripts and
// the concurrency test on a PostgreSQL store.
func TestPostgres(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "imap", "*.txt"))
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscriptOn(t, f, pgService(t, transcriptConfig(t)))
		})
	}
	t.Run("concurrent changes", func(t *testing.T) {
		t.Parallel()
		cfg := transcriptConfig(t)
		cfg.Limits.IMAPConnsPerUser = 0
		concurrentChanges(t, pgService(t, cfg))
	})
}
