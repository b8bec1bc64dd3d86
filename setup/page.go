package setup

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
)

// pageCSS is inline (one request, no assets to serve) and allowed by its
// hash in the Content-Security-Policy, so nothing else can be injected.
const pageCSS = `
:root { color-scheme: light dark; --accent: #0a66d8; --warn: #b3261e; }
body { font: 17px/1.45 -apple-system, system-ui, sans-serif; margin: 0 auto; padding: 16px; max-width: 40em; }
h1 { font-size: 1.5em; margin: .3em 0; }
h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
.button { display: block; text-align: center; background: var(--accent); color: #fff; text-decoration: none;
  padding: 14px; border-radius: 12px; font-weight: 600; font-size: 1.1em; }
.warning { border: 2px solid var(--warn); border-radius: 12px; padding: 8px 12px; margin: 12px 0; }
.warning strong { color: var(--warn); }
.note { border-left: 4px solid var(--accent); padding: 4px 12px; margin: 12px 0; }
.qr { text-align: center; }
.qr img { width: 256px; height: 256px; max-width: 100%; image-rendering: pixelated; background: #fff; padding: 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0; }
dt { color: gray; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 4px 6px 4px 0; vertical-align: top; }
dd { margin: 0; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; font-size: .9em; }
ol { padding-left: 1.3em; }
`

var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; img-src data:; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

var pageTmpl = template.Must(template.New("setup").Funcs(template.FuncMap{
	"css": func() template.CSS { return template.CSS(pageCSS) },
	"yesno": func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	},
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>duebridge: set up {{.Account.User}}</title>
<style>{{css}}</style>
</head>
<body>
<h1>duebridge for {{.Account.User}}</h1>
{{if .PlainHTTP}}<div class="warning" id="plain-http-warning"><p><strong>Not encrypted.</strong> This page and your password
came over plain HTTP, so anyone on the network could read them. iPhones also refuse to log in to
CalDAV over plain HTTP. Ask the administrator to set up TLS (<code>tls.cert_file</code> or
<code>tls.acme_hosts</code>) and an <code>https://</code> <code>http.public_url</code>.</p></div>{{end}}
{{if .Loopback}}<div class="note" id="loopback-note"><p>The server's public URL, <code>{{.PublicURL}}</code>, points
to the computer it runs on, so a phone cannot reach it. Set <code>http.public_url</code> to a name the phone
can reach.</p></div>{{end}}

<h2>Install on this iPhone or iPad</h2>
<p><a class="button" id="download" href="{{.ProfileHref}}">Download the profile</a></p>
<ol>
<li>Tap the button and allow the download; Safari says “Profile Downloaded”.</li>
<li>Open <b>Settings</b>, tap <b>Profile Downloaded</b> near the top (or General &gt; VPN &amp; Device Management) and install it within 8 minutes.</li>
{{if not .PasswordInProfile}}<li>Enter your password when asked; mail sending uses the same one.</li>{{end}}
{{if .CAs}}<li>Then turn on full trust for <b>{{(index .CAs 0).Name}}</b> under Settings &gt; General &gt; About &gt; Certificate Trust Settings. Without it the phone cannot verify the server.</li>{{end}}
<li>Your tasks appear in Calendar and Reminders{{if .Account.SMTP.Enabled}}, notifications in Mail{{end}}.</li>
</ol>
{{if not .Account.SMTP.Enabled}}<div class="note" id="no-mail"><p>The profile has no mail account: this server runs no outgoing mail
server (SMTP submission), and iOS will not keep a mail account without one. Calendar and Reminders work without it.
To get notification mails, ask the administrator to set <code>submission.listen</code> (or <code>submission.tls_listen</code>)
and download the profile again.</p></div>{{end}}
{{if .PasswordInProfile}}<div class="note"><p>The profile contains the password you logged in with. Keep the file to yourself;
log in here with an app password so that a lost phone can be shut out alone.</p></div>{{end}}
{{if .Signed}}<p>The profile is signed with the server's certificate.</p>{{end}}

<h2>Setting up another device?</h2>
<div class="qr">{{if .QR}}<img id="qr" src="{{.QR}}" alt="QR code of the profile link" width="256" height="256">{{end}}
<p>Scan with the iPhone's camera, or open <code>{{.ProfileLink}}</code></p></div>

<h2>Settings for setting up by hand</h2>
<h3>Calendar and Reminders (CalDAV account)</h3>
<dl>
<dt>Server</dt><dd>{{.Account.CalDAV.Host}}</dd>
<dt>Port</dt><dd>{{.Account.CalDAV.Port}}</dd>
<dt>Use SSL</dt><dd>{{yesno .Account.CalDAV.SSL}}</dd>
<dt>User name</dt><dd>{{.Account.User}}</dd>
<dt>URL</dt><dd><code>{{.Account.CalDAV.URL}}</code></dd>
{{if .Account.CalDAV.PrincipalURL}}<dt>Account URL</dt><dd><code>{{.Account.CalDAV.PrincipalURL}}</code></dd>{{end}}
</dl>
<h3>Incoming mail (IMAP)</h3>
<dl>
<dt>Host name</dt><dd>{{.Account.IMAP.Host}}</dd>
<dt>Port</dt><dd>{{.Account.IMAP.Port}}</dd>
<dt>Use SSL</dt><dd>{{yesno .Account.IMAP.SSL}}{{if .Account.IMAP.STARTTLS}} (STARTTLS on this port){{end}}</dd>
<dt>User name</dt><dd>{{.Account.User}}</dd>
{{if .Account.Email}}<dt>Email</dt><dd>{{.Account.Email}}</dd>{{end}}
</dl>
<h3>Outgoing mail (SMTP)</h3>
{{if .Account.SMTP.Enabled}}<dl>
<dt>Host name</dt><dd>{{.Account.SMTP.Host}}</dd>
<dt>Port</dt><dd>{{.Account.SMTP.Port}}</dd>
<dt>Use SSL</dt><dd>{{yesno .Account.SMTP.SSL}}{{if .Account.SMTP.STARTTLS}} (STARTTLS on this port){{end}}</dd>
<dt>User name</dt><dd>{{.Account.User}}</dd>
</dl>
<p>duebridge accepts the login but sends no mail: replies from the phone fail on purpose.</p>
{{else}}<p>None: this server runs no outgoing mail server (see above), so a mail account cannot be set up yet.</p>{{end}}
{{range .CAs}}<h3>Certificate authority</h3>
<dl>
<dt>Name</dt><dd>{{.Name}}</dd>
<dt>SHA-256</dt><dd><code>{{.Fingerprint}}</code></dd>
<dt>Valid until</dt><dd>{{.NotAfter}}</dd>
</dl>
<p>Compare the fingerprint with the one the phone shows before you trust it.</p>{{end}}

<h2>Devices</h2>
<p>Every profile you download gets a password of its own for that device{{if not .PasswordInProfile}} (when the administrator
puts passwords into profiles; here, make one below and type it in when the phone asks){{end}}. Revoking it shuts that device out
at once; your other devices keep working.</p>
{{if .Devices}}<table id="devices">
<tr><th>Device</th><th>Issued</th><th>Last used</th><th></th></tr>
{{range .Devices}}<tr><td>{{.Name}}</td><td>{{.Created}}</td><td>{{.LastUsed}}</td>
<td><form method="post" action="{{$.RevokePath}}"><input type="hidden" name="id" value="{{.ID}}"><button type="submit">Revoke</button></form></td></tr>
{{end}}</table>{{else}}<p id="no-devices">No device passwords yet.</p>{{end}}
<form method="post" action="{{.DevicesPath}}" id="add-device"><label>New device password for
<input name="name" maxlength="100" required placeholder="Anna's iPad"></label> <button type="submit">Create</button></form>

<h2>Calendar feed</h2>
<p>Calendars that subscribe to a link (Google Calendar, Outlook, Android, or an iPhone that only wants the
deadlines without an account) can show your deadlines from a secret feed URL. It is read-only and needs no password,
so keep it to yourself.</p>
{{if .FeedLive}}<p id="feed-live">You have a feed URL. It was shown only when it was made; if it is lost or
leaked, renew it (the old one stops working at once) or turn it off.</p>
<form method="post" action="{{.FeedPath}}" id="renew-feed"><button type="submit">Renew feed URL</button></form>
<form method="post" action="{{.FeedRevokePath}}" id="revoke-feed"><button type="submit">Turn the feed off</button></form>
{{else}}<p id="no-feed">No feed URL yet.</p>
<form method="post" action="{{.FeedPath}}" id="create-feed"><button type="submit">Create feed URL</button></form>{{end}}

<h2>Passwords</h2>
<p>Use the same password everywhere{{if .AppPasswords}}, or one of your app passwords ({{range $i, $n := .AppPasswords}}{{if $i}}, {{end}}{{$n}}{{end}}){{end}}.
An app password per device means a lost phone costs only that one: ask the administrator to remove it from the configuration.
After repeated wrong passwords the login is locked for a while.</p>
</body>
</html>
`))

// shownTmpl shows a new device password, the only time it is shown.
var shownTmpl = template.Must(template.New("device").Funcs(template.FuncMap{
	"css": func() template.CSS { return template.CSS(pageCSS) },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>duebridge: password for {{.Name}}</title>
<style>{{css}}</style>
</head>
<body>
<h1>Password for {{.Name}}</h1>
<p>Enter this as the password of user <b>{{.User}}</b> on {{.Name}} (Calendar, Reminders and Mail):</p>
<p><code id="device-password">{{.Password}}</code></p>
<div class="warning"><p><strong>It is shown only now.</strong> duebridge keeps only a hash of it; if it is lost, revoke it
on the setup page and make a new one.</p></div>
<p><a href="../../setup">Back to the setup page</a></p>
</body>
</html>
`))

// feedTmpl shows a new feed URL, the only time it is shown.
var feedTmpl = template.Must(template.New("feed").Funcs(template.FuncMap{
	"css": func() template.CSS { return template.CSS(pageCSS) },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>duebridge: calendar feed of {{.User}}</title>
<style>{{css}}</style>
</head>
<body>
<h1>Calendar feed of {{.User}}</h1>
<p><a class="button" id="webcal" href="{{.Webcal}}">Subscribe on this device</a></p>
<div class="qr">{{if .QR}}<img id="feed-qr" src="{{.QR}}" alt="QR code of the feed link" width="256" height="256">{{end}}
<p>Scan with the phone's camera to subscribe there.</p></div>
<dl>
<dt>Feed URL</dt><dd><code id="feed-url">{{.URL}}</code></dd>
<dt>Subscribe link</dt><dd><code id="feed-webcal">{{.WebcalText}}</code></dd>
</dl>
<p>In Google Calendar: Other calendars &gt; From URL, paste the feed URL. In Outlook: Add calendar &gt; Subscribe from web.
Add <code>?project=NAME</code> to see one project only.</p>
<div class="warning"><p><strong>It is shown only now.</strong> duebridge keeps only a hash of it; anyone with the link
sees your deadlines. If it is lost or leaked, renew it on the setup page: the old link stops working at once.</p></div>
<p><a href="../setup">Back to the setup page</a></p>
</body>
</html>
`))
