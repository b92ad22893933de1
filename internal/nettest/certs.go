package nettest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// CA is a certificate authority made up on the spot, for tests and the
// demo: it issues certificates with any names and dates.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NewCA makes a CA whose certificate's common name is name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Patrol test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// PEM is the CA's certificate, PEM-encoded, for a ca file.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issue returns a server certificate for names (DNS names or IP
// addresses), valid from an hour ago until notAfter, signed by the CA. The
// first name is also its common name.
func (ca *CA) Issue(notAfter time.Time, names ...string) (tls.Certificate, error) {
	return ca.IssueBetween(time.Now().Add(-time.Hour), notAfter, names...)
}

// IssueBetween is Issue for a certificate valid from notBefore, which may
// be in the future, until notAfter.
func (ca *CA) IssueBetween(notBefore, notAfter time.Time, names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		panic(fmt.Sprintf("nettest: crypto/rand failed: %v", err)) // crypto/rand does not fail on Linux
	}
	return n
}

// TLSServer accepts TLS connections on loopback, completes the handshake
// with one of its certificates (chosen by the client's SNI, else the
// first) and closes them.
type TLSServer struct {
	Addr string // host:port
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// ServeTLS starts a TLSServer with certs.
func ServeTLS(certs ...tls.Certificate) (*TLSServer, error) {
	if len(certs) == 0 {
		return nil, errors.New("nettest: ServeTLS needs a certificate")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	s := &TLSServer{Addr: ln.Addr().String(), ln: ln}
	config := &tls.Config{Certificates: certs}
	s.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				tc := tls.Server(conn, config)
				if tc.Handshake() == nil {
					tc.Close()
				}
			})
		}
	})
	return s, nil
}

// Close stops accepting and waits for the connections being served.
func (s *TLSServer) Close() {
	s.once.Do(func() {
		s.ln.Close()
		s.wg.Wait()
	})
}
