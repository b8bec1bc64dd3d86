package store

import "testing"

// TestIsSelect: a Read runs only a SELECT; outside a transaction nothing
// would roll back an UPDATE ... RETURNING run through queryRow.
func TestIsSelect(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1":                            true,
		"\n\t\tselect name\nFROM collections": true,
		"SELECT\nname FROM collections":       true,
		"SELECTED":                            false,
		"UPDATE revision SET seq = seq + 1 RETURNING seq":            false,
		"INSERT INTO outbox (body) VALUES (?) RETURNING id":          false,
		"WITH x AS (DELETE FROM kv RETURNING key) SELECT key FROM x": false,
		"":       false,
		"SELECT": false,
	} {
		if got := isSelect(q); got != want {
			t.Errorf("isSelect(%q) = %v, want %v", q, got, want)
		}
	}
}
