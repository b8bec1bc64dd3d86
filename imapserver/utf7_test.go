package imapserver

import "testing"

func TestValidMailboxName(t *testing.T) {
	for name, want := range map[string]bool{
		"INBOX": true, "Trash": true, "&-": true, "a&-b": true, "&AOk-t&AOk-": true, "*": true, "%": true,
		"Entw&APw-rfe": true, "&2D3eAA-": true, "M&APw-nchen/Stra&AN8-e": true, "Müller": true,
		"&": false, "&Jjo": false, "&AGE-": false, "&Jjo-&Jjo-": false, "&2D0-": false, "a\x01": false, "&AOk=-": false,
	} {
		if got := validMailboxName(name); got != want {
			t.Errorf("validMailboxName(%q) = %v, want %v", name, got, want)
		}
	}
	if got := listArgs([]byte(`"" "&AOk-*" RETURN (SPECIAL-USE STATUS (MESSAGES))` + "\r\n")); len(got) != 3 || got[0] != "" || got[1] != "&AOk-*" || got[2] != "RETURN" {
		t.Errorf("listArgs: %q", got)
	}
}
