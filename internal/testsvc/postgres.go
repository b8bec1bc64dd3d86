package testsvc

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for the schema set-up
)

// PostgresEnv names the PostgreSQL URL the tests may create schemas in
// (the store suite's variable; .ci/postgres.sh prints a value).
const PostgresEnv = "TEST_DUEBRIDGE_POSTGRES"

// PostgresSource returns a store source for a fresh schema, dropped when
// the test ends; it skips the test unless PostgresEnv is set. Every store
// opened on it, as replicas would, shares that schema.
func PostgresSource(t testing.TB, prefix string) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip(PostgresEnv + " is not set (eval \"$(sh .ci/postgres.sh)\")")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	schema := fmt.Sprintf("duebridge_%s_%016x", prefix, rand.Uint64())
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// KillListeners ends the LISTEN connections of every store opened on
// source (replicas share the query text) and waits until they are gone.
// The stores reconnect by themselves and resync.
func KillListeners(t testing.TB, source string) {
	t.Helper()
	u, err := url.Parse(source)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", os.Getenv(PostgresEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	listen := `LISTEN "duebridge_` + u.Query().Get("search_path") + `"`
	if _, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, listen); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		if err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE query = $1`, listen).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the listeners did not end")
		}
		time.Sleep(time.Millisecond)
	}
}
