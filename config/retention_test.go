package config

import (
	"strings"
	"testing"
)

func TestRetentionKeys(t *testing.T) {
	user := "users:\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"
	c := mustLoad(t, writeConfig(t, user))
	if c.Retention != (Retention{MailDays: 365, TrashDays: 30, TombstoneDays: 400}) {
		t.Errorf("defaults: %+v", c.Retention)
	}
	c = mustLoad(t, writeConfig(t, user+"retention:\n  mail_days: 0\n  trash_days: 7\n  tombstone_days: 90\n"))
	if c.Retention != (Retention{MailDays: 0, TrashDays: 7, TombstoneDays: 90}) {
		t.Errorf("set: %+v", c.Retention)
	}
	for _, bad := range []string{"mail_days: -1", "trash_days: 40000", "tombstone_days: soon"} {
		_, err := Load(writeConfig(t, user+"retention:\n  "+bad+"\n"))
		key := "retention." + strings.Split(bad, ":")[0]
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want an error naming %s", bad, err, key)
		}
	}
}
