#!/usr/bin/env bash
# Browser test of onboarding and the admin page: headless Chromium (Debian's
# package) logs into /setup over HTTPS with HTTP Basic, sees the QR code and
# downloads the configuration profile; then logs into /admin as an admin,
# checks the rendered sections and presses "Retry failed callbacks now". Installs what it needs (idempotent), runs
# duebridge on loopback with a dev certificate, exits non-zero on failure.
#
# Screenshots (setup.png, admin.png), the admin page's DOM (admin.html) and
# the downloaded profile land in $BROWSER_ARTIFACTS
# (default: a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
PLAYWRIGHT_VERSION=1.65.1
JSQR_VERSION=1.4.0

say() { printf 'browser: %s\n' "$*"; }

# --- what it needs -----------------------------------------------------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 ||
	! command -v python3 >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
	say "installing chromium (and node/npm/python3/curl where missing)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	pkgs=(chromium)
	command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
	command -v npm >/dev/null 2>&1 || pkgs+=(npm)
	command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
	command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
	apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
CHROMIUM=$(command -v chromium)

# playwright-core only drives the browser (it downloads none); jsqr reads the
# QR code back. Both are kept in a cache outside the repository so that
# reruns need no network.
PW_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/duebridge-browser-test"
installed() { node -p "try{require('$PW_DIR/node_modules/$1/package.json').version}catch(e){''}" 2>/dev/null; }
if [ "$(installed playwright-core)" != "$PLAYWRIGHT_VERSION" ] || [ "$(installed jsqr)" != "$JSQR_VERSION" ]; then
	say "installing playwright-core@$PLAYWRIGHT_VERSION and jsqr@$JSQR_VERSION into $PW_DIR"
	mkdir -p "$PW_DIR"
	[ -f "$PW_DIR/package.json" ] || echo '{"private":true}' >"$PW_DIR/package.json"
	npm install --prefix "$PW_DIR" --no-audit --no-fund --loglevel=error \
		"playwright-core@$PLAYWRIGHT_VERSION" "jsqr@$JSQR_VERSION" >/dev/null
fi

# --- a duebridge on loopback with a dev certificate ------------------------
WORK=$(mktemp -d)
ART="${BROWSER_ARTIFACTS:-$WORK/artifacts}"
mkdir -p "$ART"
SERVER_PID=""
cleanup() {
	local rc=$?
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -f "$WORK/server.log" ]; then
		say "server log:"
		tail -n 40 "$WORK/server.log" || true
	fi
	[ -n "${BROWSER_ARTIFACTS:-}" ] || say "artifacts in $ART"
	exit $rc
}
trap cleanup EXIT

say "building duebridge"
go build -o "$WORK/duebridge" ./cmd/duebridge
"$WORK/duebridge" dev-cert --hosts localhost,127.0.0.1 --out "$WORK/certs" >/dev/null

PASSWORD='alice-browser-pw'
APP_PASSWORD='alice-phone-app-pw'
HASH=$(printf '%s\n' "$PASSWORD" | "$WORK/duebridge" hash-password)
APP_HASH=$(printf '%s\n' "$APP_PASSWORD" | "$WORK/duebridge" hash-password)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
HTTP_PORT=$(free_port)
IMAP_PORT=$(free_port)
SUBMISSION_PORT=$(free_port)
BASE="https://localhost:$HTTP_PORT"

cat >"$WORK/duebridge.yaml" <<EOF
data_dir: $WORK/data
http:
  listen: 127.0.0.1:$HTTP_PORT
  public_url: $BASE
imap:
  listen: 127.0.0.1:$IMAP_PORT
submission:                # the profile offers a mail account only with an outgoing server
  listen: 127.0.0.1:$SUBMISSION_PORT
tls:
  cert_file: $WORK/certs/server.crt
  key_file: $WORK/certs/server.key
  ca_file: $WORK/certs/ca.crt
users:
  - name: alice
    email: alice@example.com
    password_hash: "$HASH"
    admin: true
    app_passwords:
      - name: phone
        hash: "$APP_HASH"
sources:
  - name: tracker
    secret: browser-test-secret
limits:
  login_failure_delay: 10ms
EOF

say "starting duebridge on $BASE"
"$WORK/duebridge" serve --config "$WORK/duebridge.yaml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 150); do
	if curl -fsS --cacert "$WORK/certs/ca.crt" "$BASE/healthz" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		say "duebridge exited before it was ready"
		exit 1
	fi
	sleep 0.2
done
curl -fsS --cacert "$WORK/certs/ca.crt" "$BASE/healthz" >/dev/null

# Two webhook deliveries for the admin page's source row: one signed
# right (accepted), one signed wrong (rejected).
TASK_BODY='{"id":"B-1","title":"Browser task","assignees":["alice"],"due":"2030-01-01T17:00:00Z","version":1}'
hook() {
	curl -sS -o /dev/null -w '%{http_code}' --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
		-H "X-Duebridge-Signature: sha256=$(printf '%s' "$TASK_BODY" | openssl dgst -sha256 -hmac "$1" | awk '{print $NF}')" \
		--data-binary "$TASK_BODY" "$BASE/hooks/tracker"
}
[ "$(hook browser-test-secret)" = 200 ] || { say "signed webhook delivery refused"; exit 1; }
[ "$(hook wrong-secret)" = 401 ] || { say "badly signed webhook delivery not refused with 401"; exit 1; }

# Chromium trusts exactly this server key (the dev CA is not in its store):
# the base64 SHA-256 of the certificate's SubjectPublicKeyInfo.
SPKI=$(openssl x509 -in "$WORK/certs/server.crt" -pubkey -noout |
	openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)

# --- the browser ---------------------------------------------------------------
cat >"$WORK/browser-test.js" <<'EOF'
const { chromium } = require('playwright-core');
const jsQR = require('jsqr');
const fs = require('fs');
const path = require('path');

const base = process.env.BASE, art = process.env.ART;
const failures = [];
// A hung browser must fail the run, not stall it.
setTimeout(() => { console.error('FAIL browser test timed out after 180 s'); process.exit(1); }, 180000);
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) failures.push(what); };

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${process.env.SPKI}`],
  });
  try {
    // Without credentials, and with a wrong password: the login challenge
    // and nothing of the account. Asked with fetch() from a page of the
    // same origin, because a navigation whose challenge nobody answers ends
    // in a network error in an automated browser, not in the 401 page.
    const anon = await browser.newContext();
    const anonPage = await anon.newPage();
    const health = await anonPage.goto(`${base}/healthz`);
    check(health.status() === 200, 'GET /healthz over TLS (the dev certificate is accepted)');
    const ask = (p, auth) => anonPage.evaluate(async ([p, auth]) => {
      // credentials: 'omit' keeps Chromium from answering the challenge
      // with a login prompt of its own (which nobody would fill in).
      const r = await fetch(p, { credentials: 'omit', headers: auth ? { Authorization: 'Basic ' + btoa(auth) } : {} });
      return { status: r.status, challenge: r.headers.get('www-authenticate') || '', body: await r.text() };
    }, [p, auth]);
    for (const [what, p, auth] of [
      ['/setup without login', '/setup', ''],
      ['the profile without login', '/setup/duebridge.mobileconfig', ''],
      ['/setup with a wrong password', '/setup', 'alice:not-it'],
    ]) {
      const r = await ask(p, auth);
      check(r.status === 401, `${what} answers 401 (got ${r.status})`);
      check(/^Basic /.test(r.challenge), `${what}: a Basic challenge`);
      check(!r.body.includes('duebridge for alice') && !r.body.includes('PayloadType'), `${what}: no account data`);
    }
    await anon.close();

    // The user logs in (the browser answers the Basic challenge) with the
    // app password, as one would on the phone.
    const ctx = await browser.newContext({
      httpCredentials: { username: 'alice', password: process.env.APP_PASSWORD },
      acceptDownloads: true,
      viewport: { width: 390, height: 844 }, // an iPhone-sized screen
      deviceScaleFactor: 1,
    });
    const page = await ctx.newPage();
    const resp = await page.goto(`${base}/setup`);
    check(resp.status() === 200, `GET /setup after login answers 200 (got ${resp.status()})`);
    check(resp.headers()['content-type'] === 'text/html; charset=utf-8', 'the page is HTML');
    check((await page.textContent('h1')).trim() === 'duebridge for alice', 'the page greets alice');
    check(await page.locator('#plain-http-warning').count() === 0, 'no plain-HTTP warning over TLS');
    const body = await page.textContent('body');
    check(body.includes('localhost') && body.includes(process.env.IMAP_PORT), 'the settings show host and IMAP port');

    // The QR code: a PNG that the browser decoded, of a sensible size.
    const qr = page.locator('img#qr');
    check(await qr.count() === 1, 'the page has the QR code image');
    const img = await qr.evaluate(el => ({ src: el.src.slice(0, 22), complete: el.complete, w: el.naturalWidth, h: el.naturalHeight }));
    check(img.src === 'data:image/png;base64,', `the QR code is a PNG data URI (${img.src})`);
    check(img.complete && img.w >= 200 && img.w === img.h, `the QR code image decoded (${img.w}x${img.h})`);
    const box = await qr.boundingBox();
    check(box && box.width > 100 && box.x >= 0 && box.x + box.width <= 390, 'the QR code fits an iPhone screen');
    // Read the QR code back from the pixels the browser decoded: it must
    // carry the absolute profile link.
    const px = await qr.evaluate(el => {
      const c = document.createElement('canvas');
      c.width = el.naturalWidth; c.height = el.naturalHeight;
      const g = c.getContext('2d');
      g.drawImage(el, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height);
      return { w: d.width, h: d.height, data: Array.from(d.data) };
    });
    const code = jsQR(Uint8ClampedArray.from(px.data), px.w, px.h);
    const want = `${base}/setup/duebridge.mobileconfig`;
    check(code !== null && code.data === want, `the QR code reads ${code ? code.data : '(nothing)'}, want ${want}`);
    await page.screenshot({ path: path.join(art, 'setup.png'), fullPage: true });

    // Download the profile with the button.
    const [profileResp, download] = await Promise.all([
      page.waitForResponse(r => r.url().endsWith('/setup/duebridge.mobileconfig')),
      page.waitForEvent('download'),
      page.click('#download'),
    ]);
    const h = profileResp.headers();
    check(profileResp.status() === 200, `the profile download answers 200 (got ${profileResp.status()})`);
    check(h['content-type'] === 'application/x-apple-aspen-config', `Content-Type ${h['content-type']}`);
    check(/^attachment;/.test(h['content-disposition'] || '') && /\.mobileconfig"/.test(h['content-disposition']),
      `Content-Disposition ${h['content-disposition']}`);
    check(download.suggestedFilename() === 'duebridge.mobileconfig', `file name ${download.suggestedFilename()}`);
    const file = path.join(art, 'duebridge.mobileconfig');
    await download.saveAs(file);
    const bytes = fs.readFileSync(file);
    const text = bytes.toString('utf8');
    check(bytes.length > 1000 && bytes.length < 64 * 1024, `profile size ${bytes.length} bytes`);
    check(text.startsWith('<?xml') && text.includes('<plist version="1.0">'), 'the profile is an XML property list');
    for (const t of ['Configuration', 'com.apple.caldav.account', 'com.apple.mail.managed', 'com.apple.security.root']) {
      check(text.includes(`<string>${t}</string>`), `the profile has a ${t} payload`);
    }
    check(text.includes('<string>localhost</string>') && text.includes('<string>alice</string>'), 'host and user in the profile');
    check(!text.includes(process.env.APP_PASSWORD), 'no password in the profile');
    await ctx.close();

    // The admin page, as the admin on a phone-sized screen.
    const adm = await browser.newContext({
      httpCredentials: { username: 'alice', password: process.env.PASSWORD },
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 1,
    });
    const ap = await adm.newPage();
    const ar = await ap.goto(`${base}/admin`);
    check(ar.status() === 200, `GET /admin as the admin answers 200 (got ${ar.status()})`);
    check((await ap.textContent('h1')).trim() === 'duebridge admin', 'the admin page is rendered');
    const h2 = (await ap.locator('h2').allTextContents()).map(s => s.trim());
    for (const sec of ['Health', 'Sources', 'Queues', 'Lock-outs now', 'Retention', 'Sync health']) {
      check(h2.includes(sec), `the admin page has the section "${sec}" (has ${h2.join(', ')})`);
    }
    check((await ap.textContent('#ready')).trim() === 'Ready.', 'the admin page says ready');
    const row = (await ap.locator('#sources tr', { hasText: 'tracker' }).textContent()) || '';
    check(/1 accepted/.test(row) && /1 rejected/.test(row) && /0 pending/.test(row),
      `the source row shows the deliveries and the callback queue (${row.replace(/\s+/g, ' ').trim()})`);
    check(/20\d\d-\d\d-\d\dT/.test(row), 'the source row has a last delivery time');
    check((await ap.textContent('#lockouts')).trim() === 'None.', 'no lock-outs in force');
    const wide = await ap.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= 390, `the admin page fits an iPhone screen (${wide}px wide)`);
    await ap.screenshot({ path: path.join(art, 'admin.png'), fullPage: true });
    fs.writeFileSync(path.join(art, 'admin.html'), await ap.content());
    // The retry button: a same-origin POST, then back on the page.
    const [retried] = await Promise.all([
      ap.waitForNavigation(),
      ap.click('#retry button'),
    ]);
    check(retried.status() === 200 && new URL(ap.url()).pathname === '/admin', `the retry button lands on /admin (${ap.url()})`);
    check(/0 failing callback\(s\) made due now/.test(await ap.textContent('#retried')), 'the page says how many were retried');
    await adm.close();
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.log(`${failures.length} check(s) failed`);
    process.exit(1);
  }
  console.log('all browser checks passed');
  process.exit(0);
})().catch(e => { console.error(e); process.exit(1); });
EOF

say "driving $("$CHROMIUM" --version 2>/dev/null | head -n1)"
BASE="$BASE" ART="$ART" IMAP_PORT="$IMAP_PORT" SPKI="$SPKI" APP_PASSWORD="$APP_PASSWORD" PASSWORD="$PASSWORD" CHROMIUM="$CHROMIUM" \
	NODE_PATH="$PW_DIR/node_modules" timeout 240 node "$WORK/browser-test.js"

# The profile the browser saved is the one the server makes: compare with
# curl (same login), minus nothing (it is deterministic).
curl -fsS --cacert "$WORK/certs/ca.crt" -u "alice:$APP_PASSWORD" -o "$WORK/curl.mobileconfig" "$BASE/setup/duebridge.mobileconfig"
cmp "$WORK/curl.mobileconfig" "$ART/duebridge.mobileconfig"
say "passed"
