#!/usr/bin/env bash
# .ci/imap-client.sh: a third-party IMAP client from Debian against a live
# duebridge.
#
# It builds duebridge, starts it on free loopback ports with TLS (a dev CA
# from `duebridge dev-cert`), posts tasks through the signed webhook (curl +
# openssl), syncs alice's mailboxes with mbsync (isync) over IMAPS and over
# STARTTLS, and checks what arrived: the number of mails, their subjects,
# \Flagged on the urgent one, a text/calendar METHOD:PUBLISH part in each,
# and that a flag set in the client reaches the server. Curl's SMTP client
# then checks the submission listener: login accepted, sending refused.
#
# Installs what it needs (isync, curl, openssl, python3) with apt-get when
# missing. Exits non-zero on any failure. Run from anywhere:
#
#     bash .ci/imap-client.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'imap-client.sh: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

need=()
command -v mbsync >/dev/null 2>&1 || need+=(isync)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

work=$(mktemp -d)
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else log "kept $work"; fi
}
trap cleanup EXIT

log "building duebridge"
go build -o "$work/duebridge" ./cmd/duebridge
"$work/duebridge" dev-cert --hosts 127.0.0.1,localhost --out "$work/certs" >/dev/null

secret="ci-secret-$(date +%s)"
hash=$(printf 'alice-pw' | "$work/duebridge" hash-password | tail -n 1)
cat >"$work/duebridge.yaml" <<EOF
data_dir: $work/data
http:
  listen: 127.0.0.1:0
  public_url: https://127.0.0.1
imap:
  listen: 127.0.0.1:0
  tls_listen: 127.0.0.1:0
submission:
  listen: 127.0.0.1:0
  tls_listen: 127.0.0.1:0
tls:
  cert_file: $work/certs/server.crt
  key_file: $work/certs/server.key
users:
  - name: alice
    email: alice@example.com
    password_hash: "$hash"
sources:
  - name: tracker
    secret: "$secret"
mail:
  from: "duebridge <tasks@example.com>"
EOF
"$work/duebridge" check-config --config "$work/duebridge.yaml" >&2

log "starting duebridge"
"$work/duebridge" serve --config "$work/duebridge.yaml" >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 100); do
	grep -q '^  IMAPS:' "$work/stdout" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; fail "duebridge exited"; }
	sleep 0.1
done
grep -q '^  IMAPS:' "$work/stdout" || { cat "$work/stdout" "$work/stderr" >&2; fail "duebridge did not report its listeners"; }
field() { awk -v k="$1" '$1 == k { print $2; exit }' "$work/stdout"; }
# With http.public_url set, the banner prints the real address as "Listens:".
base=$(field "Listens:")
[ -n "$base" ] || base=$(field "Webhooks:" | sed 's|/hooks/.*||')
imap=$(field "IMAP:")
imaps=$(field "IMAPS:")
smtp=$(field "SMTP:")
smtps=$(field "SMTPS:")
log "http $base, imap $imap, imaps $imaps, smtp $smtp, smtps $smtps"

post() {
	local body=$1 sig code
	sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
	code=$(curl -sS -o "$work/resp" -w '%{http_code}' --cacert "$work/certs/ca.crt" \
		-H 'Content-Type: application/json' -H "X-Duebridge-Signature: sha256=$sig" \
		--data-binary "$body" "$base/hooks/tracker")
	[ "$code" = 200 ] || fail "webhook answered $code: $(cat "$work/resp")"
}
post '{"id":"CI-1","title":"Ship release 2.1","assignees":["alice"],"project":"Release","due":"2030-12-01T17:00:00Z","url":"https://tracker.example.com/CI-1"}'
post '[{"id":"CI-2","title":"Rotate the signing keys","assignees":["alice"],"priority":"urgent","due":"2030-12-02"},{"id":"CI-3","title":"Write release notes","assignees":["alice"],"due":"2030-12-03T09:00:00Z"}]'
post '{"id":"CI-1","title":"Ship release 2.1","assignees":["alice"],"project":"Release","due":"2030-12-05T17:00:00Z","url":"https://tracker.example.com/CI-1","version":2}'

# mbsync: one account over implicit TLS, one over STARTTLS on the plain port.
mbsync_conf() { # name host:port ssltype maildir
	# isync matches the certificate against DNS names only, not IP
	# addresses: connect by the name the dev certificate also carries.
	local host=localhost port=${2##*:}
	cat <<EOF
IMAPAccount $1
Host $host
Port $port
User alice
Pass alice-pw
AuthMechs LOGIN
SSLType $3
CertificateFile $work/certs/ca.crt
Timeout 20

IMAPStore $1-remote
Account $1

MaildirStore $1-local
Path $4/
Inbox $4/INBOX
SubFolders Verbatim

Channel $1
Far :$1-remote:
Near :$1-local:
Patterns *
Create Near
Sync All
SyncState *

EOF
}
{
	mbsync_conf tls "$imaps" IMAPS "$work/mail-tls"
	mbsync_conf starttls "$imap" STARTTLS "$work/mail-starttls"
	mbsync_conf check "$imaps" IMAPS "$work/mail-check"
} >"$work/mbsyncrc"
mkdir -p "$work/mail-tls" "$work/mail-starttls" "$work/mail-check"

log "mbsync over IMAPS"
mbsync -c "$work/mbsyncrc" tls >&2 || fail "mbsync (IMAPS) failed"
log "mbsync over STARTTLS"
mbsync -c "$work/mbsyncrc" starttls >&2 || fail "mbsync (STARTTLS) failed"

check() { # maildir
	python3 - "$1" <<'EOF'
import email, email.policy, glob, os, sys
root = sys.argv[1]
files = sorted(glob.glob(os.path.join(root, "INBOX", "cur", "*")) + glob.glob(os.path.join(root, "INBOX", "new", "*")))
want = {
    "Assigned to you: Ship release 2.1",
    "[URGENT] Assigned to you: Rotate the signing keys",
    "Assigned to you: Write release notes",
    "Due date changed: Ship release 2.1",
}
errors = []
if len(files) != 4:
    errors.append(f"{len(files)} mails in INBOX, want 4")
subjects, flagged = set(), []
for f in files:
    msg = email.message_from_binary_file(open(f, "rb"), policy=email.policy.default)
    subject = str(msg["Subject"])
    subjects.add(subject)
    if "F" in os.path.basename(f).split(":2,")[-1]:
        flagged.append(subject)
    cal = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    kinds = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    if kinds != ["text/plain", "text/html", "text/calendar"]:
        errors.append(f"{subject!r}: parts {kinds}")
    elif "METHOD:PUBLISH" not in cal[0].get_content() or "BEGIN:VTODO" not in cal[0].get_content():
        errors.append(f"{subject!r}: calendar part without METHOD:PUBLISH/VTODO")
    if msg["In-Reply-To"] is None or msg["Message-ID"] is None:
        errors.append(f"{subject!r}: no threading headers")
if subjects != want:
    errors.append(f"subjects {sorted(subjects)}, want {sorted(want)}")
if flagged != ["[URGENT] Assigned to you: Rotate the signing keys"]:
    errors.append(f"flagged {flagged}, want only the urgent task")
if not os.path.isdir(os.path.join(root, "Trash")):
    errors.append("no Trash folder synced")
for e in errors:
    print("  " + e, file=sys.stderr)
print(f"{root}: {len(files)} mails: " + "; ".join(sorted(subjects)), file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
}
check "$work/mail-tls" || fail "IMAPS sync: wrong content"
check "$work/mail-starttls" || fail "STARTTLS sync: wrong content"

# A flag set in the client reaches the server: mark one mail seen locally,
# sync, then a fresh sync into an empty maildir must see it seen.
one=$(find "$work/mail-tls/INBOX/new" "$work/mail-tls/INBOX/cur" -type f | sort | head -n 1)
[ -n "$one" ] || fail "no mail file to flag"
base_name=$(basename "$one")
case "$base_name" in
*:2,*) seen_name="${base_name%%:2,*}:2,$(printf '%s' "${base_name##*:2,}S" | fold -w1 | sort -u | tr -d '\n')" ;;
*) seen_name="$base_name:2,S" ;;
esac
mv "$one" "$work/mail-tls/INBOX/cur/$seen_name"
mbsync -c "$work/mbsyncrc" tls >&2 || fail "mbsync (flag push) failed"
mbsync -c "$work/mbsyncrc" check >&2 || fail "mbsync (check) failed"
seen=$(find "$work/mail-check/INBOX/cur" "$work/mail-check/INBOX/new" -type f | grep -c ':2,[A-Z]*S' || true)
[ "$seen" = 1 ] || fail "$seen mails seen on the server after the flag push, want 1"
log "flag push: 1 mail \\Seen on the server"

# The outgoing server: curl's SMTP client logs in, and sending is refused.
printf 'From: alice@example.com\r\nTo: bob@example.com\r\nSubject: reply\r\n\r\nhi\r\n' >"$work/reply.eml"
for url in "smtp://$smtp" "smtps://$smtps"; do
	if curl -sS --ssl-reqd --cacert "$work/certs/ca.crt" --url "$url" --user alice:alice-pw \
		--mail-from alice@example.com --mail-rcpt bob@example.com -T "$work/reply.eml" 2>"$work/curl.err"; then
		fail "$url accepted a message"
	fi
	grep -q '550' "$work/curl.err" || { cat "$work/curl.err" >&2; fail "$url: no 550 refusal"; }
	if curl -sS --ssl-reqd --cacert "$work/certs/ca.crt" --url "$url" --user alice:wrong \
		--mail-from alice@example.com --mail-rcpt bob@example.com -T "$work/reply.eml" 2>"$work/curl.err"; then
		fail "$url accepted a wrong password"
	fi
	grep -q '535\|Login denied' "$work/curl.err" || { cat "$work/curl.err" >&2; fail "$url: wrong password not refused with 535"; }
done
log "submission: login accepted, sending refused with 550"

log "OK"
