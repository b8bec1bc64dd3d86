package store_test

import (
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

func TestNextAlertAndValueSQLite(t *testing.T) {
	t.Parallel()
	testNextAlertAndValue(t, sqliteBackend())
}

func TestNextAlertAndValuePostgres(t *testing.T) {
	t.Parallel()
	testNextAlertAndValue(t, postgresBackend(t))
}

// testNextAlertAndValue: NextAlertAndValue answers in one Read what
// NextAlert and Get answer, with neither, either and both set; a schedule
// without a FireAt does not count.
func testNextAlertAndValue(t *testing.T, b backend) {
	e := newEnv(t, b)
	check := func(what string, wantAt time.Time, wantOK bool, wantV string) {
		t.Helper()
		var (
			at time.Time
			ok bool
			v  string
		)
		err := e.s.Read(t.Context(), func(tx store.Tx) (err error) {
			at, ok, v, err = tx.NextAlertAndValue("mail.flips")
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok != wantOK || !at.Equal(wantAt) || v != wantV {
			t.Errorf("%s: %v %v %q, want %v %v %q", what, at, ok, v, wantAt, wantOK, wantV)
		}
	}
	check("nothing", time.Time{}, false, "")
	e.update(func(tx store.Tx) error { return tx.Set("mail.flips", `[{"user":"alice"}]`) })
	check("a value, no alert", time.Time{}, false, `[{"user":"alice"}]`)
	later, sooner := t0.Add(5*time.Hour), t0.Add(2*time.Hour)
	e.update(func(tx store.Tx) error {
		for i, at := range []time.Time{later, sooner, {}} {
			a := &store.Alert{User: "alice", Source: "tracker", TaskID: string(rune('A' + i)), Due: store.When{Time: t0.Add(48 * time.Hour)},
				Covered: t0, AlertAt: at, FireAt: at}
			if _, err := tx.ArmPlannedAlert(a); err != nil {
				return err
			}
		}
		return nil
	})
	var want time.Time
	var wantOK bool
	e.view(func(tx store.Tx) (err error) { want, wantOK, err = tx.NextAlert(); return err })
	if !wantOK || !want.Equal(sooner) {
		t.Fatalf("NextAlert = %v %v, want %v", want, wantOK, sooner)
	}
	check("both", sooner, true, `[{"user":"alice"}]`)
	e.update(func(tx store.Tx) error { return tx.Set("mail.flips", "") })
	check("an alert, an empty value", sooner, true, "")
}
