// Package tlsutil holds duebridge's TLS plumbing:
//
//   - DevCert writes a local CA and a server certificate for trying the bridge
//     with a real iPhone on a LAN (`duebridge dev-cert`). The server certificate
//     follows Apple's rules for TLS server certificates (iOS 13 and later): names
//     only in the subjectAltName, extended key usage serverAuth, a validity of at
//     most 825 days, SHA-256 signatures with an ECDSA P-256 key.
//   - Reloader serves a certificate/key pair from files through
//     tls.Config.GetCertificate and picks up replaced files without a restart,
//     keeping the previous certificate when the new files are broken.
//   - ServerConfig builds the tls.Config both listeners (CalDAV over HTTPS and
//     IMAP) use: TLS 1.2 or newer, AEAD cipher suites only.
//   - TicketKeys seals and opens session tickets for every listener with
//     in-memory rotating keys; with a TicketKeyFile (tls.ticket_keys_file,
//     `duebridge ticket-keys rotate`) TLS 1.3 tickets use keys from a file
//     that replicas share and restarts keep.
//
// The package depends on the standard library only.
package tlsutil
