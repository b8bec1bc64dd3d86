package main

import (
	"os"
	"testing"
	"time"
)

// Config edited while duebridge was stopped: the default lead times
// changed and bob was added. serve now brings the stored reminders in step
// before it opens its listeners: alice's phone shows the new alert, and
// bob's phone has the task that named him before he was configured.
func TestRestartRendersConfigChangedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	first := startPhoneServerAt(t, cfgPath)
	now := time.Now().UTC().Truncate(time.Minute)
	due := now.Add(72 * time.Hour)
	first.post(t, map[string]any{"id": "A", "title": "Ship release", "assignees": []string{"alice", "bob"},
		"due": due.Format(time.RFC3339)})
	phone := newPhone(t, first, "alice")
	syncPhone(t, phone)
	wantAlertsAt(t, phone, "Ship release", now, due.Add(time.Hour), due.Add(-24*time.Hour), due.Add(-time.Hour))
	first.stop()

	addBobAndLeadTimes3h(t, dir, cfgPath)
	second := startPhoneServerAt(t, cfgPath)
	for _, user := range []string{"alice", "bob"} {
		p := newPhone(t, second, user)
		syncPhone(t, p)
		wantAlertsAt(t, p, "Ship release", now, due.Add(time.Hour), due.Add(-3*time.Hour))
	}
}

// addBobAndLeadTimes3h rewrites the config with bob beside alice and every
// lead time changed to 3h, so a restart after it has users to re-render;
// it returns the config without the lead times, for a later change.
func addBobAndLeadTimes3h(t *testing.T, dir, cfgPath string) string {
	t.Helper()
	writeConfig(t, dir, "alice", "bob")
	yaml, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, cfgPath, string(yaml)+"notifications:\n  lead_times: [3h]\n")
	return string(yaml)
}
