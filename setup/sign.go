package setup

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// Sign wraps a profile in a CMS (PKCS#7) SignedData signed with cert's key,
// the content attached, SHA-256, and cert's chain included, which is the
// form iOS installs as a signed profile (openssl smime -sign -nodetach
// makes the same). The phone shows it as verified when it trusts the chain.
//
// smallstep/pkcs7 is used because Go has no CMS signer and it is the
// maintained fork of the usual package, with ECDSA (the dev-cert and ACME
// keys) as well as RSA.
func Sign(profile []byte, cert *tls.Certificate) ([]byte, error) {
	if cert == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("sign profile: no certificate with a private key")
	}
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if i == 0 && cert.Leaf != nil {
			chain = append(chain, cert.Leaf)
			continue
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("sign profile: parse certificate %d of the chain: %w", i+1, err)
		}
		chain = append(chain, c)
	}
	sd, err := pkcs7.NewSignedData(profile)
	if err != nil {
		return nil, fmt.Errorf("sign profile: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(chain[0], cert.PrivateKey, chain[1:], pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("sign profile: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("sign profile: %w", err)
	}
	return der, nil
}
