package tlsutil

import "crypto/tls"

// ServerConfig returns the tls.Config for duebridge's listeners (HTTPS for
// CalDAV and the setup pages, IMAPS and IMAP STARTTLS), serving certificates
// from getCert (Reloader.GetCertificate, or an ACME manager's).
//
//   - TLS 1.2 is the minimum; TLS 1.3 is negotiated with every client that
//     offers it (iOS 16–18 do).
//   - For TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
//     ChaCha20-Poly1305) is allowed: no CBC, no RSA key exchange, no 3DES.
//     The TLS 1.3 suites are fixed by Go and all AEAD.
//   - Key exchange groups and session tickets stay at Go's defaults, which
//     include the post-quantum hybrids.
//   - Records are full size from the first byte (DynamicRecordSizingDisabled):
//     Go otherwise starts every connection with ~1 KB records, one write
//     syscall each, and a phone's poll is a new connection whose whole
//     answer (the home PROPFIND's 207 is ~22 KB) would go out in 7 writes
//     instead of 3. Small first records help a browser render early; a
//     CalDAV or IMAP client parses the whole answer anyway.
//
// NextProtos is left empty: net/http adds "h2" and "http/1.1" itself when
// serving with ServeTLS/ListenAndServeTLS; set it yourself for a listener
// made with tls.NewListener. Each call returns a new Config, free to modify.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   CipherSuitesTLS12(),
		GetCertificate: getCert,

		DynamicRecordSizingDisabled: true,
	}
}

// CipherSuitesTLS12 lists the TLS 1.2 cipher suites ServerConfig allows.
func CipherSuitesTLS12() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}
