#!/usr/bin/env bash
# .ci/thunderbird.sh: Thunderbird (Debian's ESR) against a live duebridge.
#
# Run as root on Debian from the repository. It installs, once, Debian's
# thunderbird and xvfb (about 250 MB); builds duebridge; starts it on
# 127.0.0.1 with free ports and a generated config; feeds three tasks
# through the signed webhook; writes a Thunderbird profile by hand: three
# CalDAV calendars (two Reminders lists and a deadlines calendar, offline
# cache on) and an IMAP account, with the password already in the profile's
# login store (.ci/tb_logins.py encrypts it with NSS as Thunderbird does),
# so nothing asks; starts Thunderbird under Xvfb and leaves it to sync for
# at most TB_SECONDS (default 120); then checks its stored calendar cache
# (calendar-data/cache.sqlite: the tasks, the deadline events) and its
# IMAP folder (ImapMail/…/INBOX and its summary: the mail subjects).
# Thunderbird and Xvfb are stopped by their pids. KEEP=1 keeps the temp dir.
set -euo pipefail

NAME=thunderbird
. "$(dirname "$0")/lib.sh"
limit=${TB_SECONDS:-120}

need thunderbird xvfb xauth curl openssl python3

configure_duebridge alice
start_duebridge

task_dates
body=$(
	cat <<EOF
[{"id":"TB-1","title":"Ship release 2.1","project":"Release","assignees":["alice"],"due":"$due1","priority":"high","updated_at":"$now","version":1},
 {"id":"TB-2","title":"Write release notes","project":"Release","assignees":["alice"],"due":"$due2","updated_at":"$now","version":1},
 {"id":"TB-3","title":"Review the backup report","project":"Ops","assignees":["alice"],"updated_at":"$now","version":1}]
EOF
)
answer=$(post_tasks "$body")
if [ "$answer" = '{"accepted":3,"ignored":0}' ]; then ok "webhook accepted 3 tasks"; else bad "webhook: $answer"; fi

# The profile.
prof="$work/profile"
mkdir -p "$prof"
cal() { # id collection name
	cat <<EOF
user_pref("calendar.registry.$1.type", "caldav");
user_pref("calendar.registry.$1.uri", "$base/dav/alice/calendars/$2/");
user_pref("calendar.registry.$1.name", "$3");
user_pref("calendar.registry.$1.username", "alice");
user_pref("calendar.registry.$1.cache.enabled", true);
user_pref("calendar.registry.$1.calendar-main-in-composite", true);
user_pref("calendar.registry.$1.refreshInterval", "1");
EOF
}
{
	cat <<EOF
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.provider.enabled", false);
user_pref("mail.rights.version", 1);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mail.winsearch.firstRunDone", true);
user_pref("mail.inline_attachments", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("calendar.timezone.local", "UTC");
user_pref("calendar.timezone.useSystemTimezone", false);
user_pref("mail.accountmanager.accounts", "account1,account2");
user_pref("mail.accountmanager.defaultaccount", "account1");
user_pref("mail.accountmanager.localfoldersserver", "server2");
user_pref("mail.account.account1.identities", "id1");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account2.server", "server2");
user_pref("mail.identity.id1.fullName", "Alice");
user_pref("mail.identity.id1.useremail", "alice@example.com");
user_pref("mail.identity.id1.valid", true);
user_pref("mail.server.server1.type", "imap");
user_pref("mail.server.server1.name", "duebridge");
user_pref("mail.server.server1.hostname", "127.0.0.1");
user_pref("mail.server.server1.port", $imap_port);
user_pref("mail.server.server1.userName", "alice");
user_pref("mail.server.server1.socketType", 0);
user_pref("mail.server.server1.authMethod", 3);
user_pref("mail.server.server1.login_at_startup", true);
user_pref("mail.server.server1.check_new_mail", true);
user_pref("mail.server.server1.check_time", 1);
user_pref("mail.server.server1.offline_download", true);
user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/127.0.0.1");
user_pref("mail.server.server2.type", "none");
user_pref("mail.server.server2.name", "Local Folders");
user_pref("mail.server.server2.hostname", "Local Folders");
user_pref("mail.server.server2.userName", "nobody");
user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders");
EOF
	cal dbtasks release-tasks "Release (tasks)"
	cal dbdeadlines release-deadlines "Release (deadlines)"
	cal dbops ops-tasks "Ops (tasks)"
} >"$prof/user.js"
# The password, non-interactively: the CalDAV origin with the Basic realm,
# and the IMAP server as Thunderbird names it.
"$PY" "$root/.ci/tb_logins.py" "$prof" alice "$alice_pw" \
	"$base=duebridge" "imap://127.0.0.1=imap://127.0.0.1" "imap://127.0.0.1:$imap_port=imap://127.0.0.1:$imap_port"
ok "profile written (password in logins.json)"

# Thunderbird under Xvfb.
disp=""
for n in $(seq 90 140); do
	if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then
		disp=":$n"
		break
	fi
done
Xvfb "$disp" -screen 0 1280x1024x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
sleep 1
DISPLAY=$disp HOME="$work" MOZ_CRASHREPORTER_DISABLE=1 thunderbird --profile "$prof" --no-remote >"$work/thunderbird.log" 2>&1 &
pids+=($!)
tbpid=$!

# Left to sync; checked every few seconds, at most $limit seconds.
check() {
	"$PY" - "$prof" <<'EOF'
import glob, os, shutil, sqlite3, sys, tempfile
prof = sys.argv[1]
want_todos = {"Ship release 2.1", "Write release notes", "Review the backup report"}
want_events = {"Ship release 2.1", "Write release notes"}
want_subjects = {f"Assigned to you: {t}" for t in want_todos}
missing = []
db = os.path.join(prof, "calendar-data", "cache.sqlite")
todos, events = set(), set()
if os.path.exists(db):
    # Thunderbird holds the database locked while it runs: read a copy
    # (with its write-ahead log, where the newest rows are).
    tmp = tempfile.mkdtemp()
    for f in glob.glob(db + "*"):
        shutil.copy(f, tmp)
    try:
        c = sqlite3.connect(os.path.join(tmp, "cache.sqlite"), timeout=1)
        todos = {r[0] for r in c.execute("SELECT title FROM cal_todos")}
        events = {r[0] for r in c.execute("SELECT title FROM cal_events")}
        c.close()
    except sqlite3.Error as e:
        missing.append(f"cache: {e}")
    shutil.rmtree(tmp)
missing += [f"task {t!r}" for t in sorted(want_todos - todos)]
missing += [f"deadline {t!r}" for t in sorted(want_events - events)]
text = b""
for f in glob.glob(os.path.join(prof, "ImapMail", "*", "INBOX*")):
    text += open(f, "rb").read()
missing += [f"mail {s!r}" for s in sorted(want_subjects) if s.encode() not in text]
print("; ".join(missing))
sys.exit(1 if missing else 0)
EOF
}
deadline=$((SECONDS + limit))
result=""
while [ $SECONDS -lt $deadline ]; do
	sleep 5
	if ! kill -0 "$tbpid" 2>/dev/null; then
		result="Thunderbird exited: $(tail -5 "$work/thunderbird.log")"
		break
	fi
	if result=$(check); then
		result=""
		break
	fi
done
if [ -z "$result" ]; then
	ok "Thunderbird's calendar cache holds the 3 tasks and 2 deadlines, its INBOX the 3 mails (after $((SECONDS - deadline + limit)) s)"
else
	bad "after $limit s Thunderbird still misses: $result"
fi
if curl -fsS -u "alice:$alice_pw" "$base/admin/sync" | grep -q Thunderbird; then
	ok "the sync health lists Thunderbird as alice's device"
else
	bad "no Thunderbird in /admin/sync"
fi

echo "thunderbird: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
