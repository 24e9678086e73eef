// Command pki writes the certificates and keys a single-host development control plane needs.
//
// It is idempotent: existing files are kept, so re-running it after a partial failure only fills
// in what is missing, and a restarted cluster keeps trusting the kubeconfig it handed out.
// Every file is written to a temporary name and renamed into place so a crash never leaves a
// truncated key behind.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 2 * 365 * 24 * time.Hour
	clockSkew    = time.Hour
)

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type leaf struct {
	name  string
	cn    string
	orgs  []string
	usage []x509.ExtKeyUsage
	dns   []string
	ips   []net.IP
}

func main() {
	dir := flag.String("dir", "", "output directory (required)")
	serviceIP := flag.String("service-ip", "10.96.0.1", "first IP of the service range (kubernetes.default)")
	extraSANs := flag.String("extra-sans", "", "comma-separated extra DNS names or IPs for the apiserver")
	nodeName := flag.String("node-name", "", "also write the identities of a real node of this name")
	nodeIP := flag.String("node-ip", "", "the real node's IP (kubelet serving certificate)")
	flag.Parse()
	if *dir == "" {
		fail(errors.New("--dir is required"))
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fail(err)
	}
	if err := run(*dir, *serviceIP, *extraSANs); err != nil {
		fail(err)
	}
	if *nodeName != "" {
		if err := runNode(*dir, *nodeName, *nodeIP); err != nil {
			fail(err)
		}
	}
}

// runNode writes what a real node's processes authenticate with: the kubelet as
// system:node:<name> in system:nodes (what the Node authorizer and NodeRestriction expect), its
// serving certificate for the node's IP, kube-proxy as system:kube-proxy (bound to
// system:node-proxier by default) and CoreDNS as system:coredns (the cluster binds a read-only
// role to it).
func runNode(dir, name, nodeIP string) error {
	ca, err := loadOrCreateCA(dir, "ca", "rtdetr-local-ca")
	if err != nil {
		return err
	}
	ip := net.ParseIP(nodeIP)
	if ip == nil {
		return fmt.Errorf("invalid --node-ip %q", nodeIP)
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []leaf{
		{name: "kubelet-client", cn: "system:node:" + name, orgs: []string{"system:nodes"},
			usage: client},
		{name: "kubelet-serving", cn: name, usage: server, dns: []string{name, "localhost"},
			ips: []net.IP{ip, net.ParseIP("127.0.0.1")}},
		{name: "kube-proxy", cn: "system:kube-proxy", usage: client},
		{name: "coredns", cn: "system:coredns", usage: client},
	}
	for _, l := range leaves {
		if err := ensureLeaf(dir, ca, l); err != nil {
			return err
		}
	}
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pki: %v\n", err)
	os.Exit(1)
}

func run(dir, serviceIP, extraSANs string) error {
	ca, err := loadOrCreateCA(dir, "ca", "rtdetr-local-ca")
	if err != nil {
		return err
	}
	frontProxyCA, err := loadOrCreateCA(dir, "front-proxy-ca", "rtdetr-local-front-proxy-ca")
	if err != nil {
		return err
	}

	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local"}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if ip := net.ParseIP(serviceIP); ip != nil {
		ips = append(ips, ip)
	} else {
		return fmt.Errorf("invalid --service-ip %q", serviceIP)
	}
	for _, san := range strings.Split(extraSANs, ",") {
		san = strings.TrimSpace(san)
		if san == "" {
			continue
		}
		if ip := net.ParseIP(san); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, san)
		}
	}

	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []leaf{
		{name: "apiserver", cn: "kube-apiserver", usage: server, dns: dns, ips: ips},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, usage: client},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager", usage: client},
		{name: "kube-scheduler", cn: "system:kube-scheduler", usage: client},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client",
			orgs: []string{"kubeadm:cluster-admins"}, usage: client},
		// Serving certificates of the controller-manager and scheduler secure ports.
		{name: "kube-controller-manager-serving", cn: "kube-controller-manager", usage: server,
			dns: []string{"localhost"}, ips: []net.IP{net.ParseIP("127.0.0.1")}},
		{name: "kube-scheduler-serving", cn: "kube-scheduler", usage: server,
			dns: []string{"localhost"}, ips: []net.IP{net.ParseIP("127.0.0.1")}},
	}
	for _, l := range leaves {
		if err := ensureLeaf(dir, ca, l); err != nil {
			return err
		}
	}
	proxyClient := leaf{name: "front-proxy-client", cn: "front-proxy-client", usage: client}
	if err := ensureLeaf(dir, frontProxyCA, proxyClient); err != nil {
		return err
	}
	return ensureServiceAccountKey(dir)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func loadOrCreateCA(dir, name, cn string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if exists(certPath) && exists(keyPath) {
		return loadCA(certPath, keyPath)
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func loadCA(certPath, keyPath string) (*authority, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM data", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("%s: no PEM data", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key cannot sign", keyPath)
	}
	return &authority{cert: cert, key: signer}, nil
}

func ensureLeaf(dir string, ca *authority, l leaf) error {
	certPath, keyPath := filepath.Join(dir, l.name+".crt"), filepath.Join(dir, l.name+".key")
	if exists(certPath) && exists(keyPath) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   sn,
		Subject:        pkix.Name{CommonName: l.cn, Organization: l.orgs},
		NotBefore:      now.Add(-clockSkew),
		NotAfter:       now.Add(leafValidity),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    l.usage,
		DNSNames:       l.dns,
		IPAddresses:    l.ips,
		AuthorityKeyId: ca.cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", l.name, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if exists(keyPath) && exists(pubPath) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(pubPath, "PUBLIC KEY", pub, 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: blockType, Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
