package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/pki"
)

// Defaults of PKIOptions: the objects deploy/kubernetes/terrane.yaml
// grants the server.
const (
	DefaultPKISecret   = "terrane-pki"
	DefaultCAConfigMap = "terrane-ca"
	DefaultService     = "terrane-server"
	// ClusterDomain is the cluster's DNS domain the Service's longest name
	// ends in (kubeadm's default).
	ClusterDomain = "cluster.local"
)

// Keys of the PKI Secret and of the CA ConfigMap.
const (
	SecretCACert    = "ca.crt"
	SecretCAKey     = "ca.key"
	SecretAdminCert = "admin.crt"
	SecretAdminKey  = "admin.key"
	ConfigMapCACert = "ca.crt"
)

// PKIOptions configure BootstrapPKI.
type PKIOptions struct {
	Client    kubernetes.Interface
	Namespace string
	// Secret holds the CA and the admin certificate (default terrane-pki).
	Secret string
	// CAConfigMap publishes the CA certificate, without its key, for the
	// agents and admins (default terrane-ca; "-": none).
	CAConfigMap string
	// Service is the server's Service: its cluster IPs and DNS names join
	// the server certificate ("": none).
	Service string
	// Hosts are more names and addresses for the server certificate: the
	// pod's IP (with hostNetwork, the node's).
	Hosts []string
	Log   *slog.Logger
}

// ServerTLS is what a server serves with: its own certificate, issued at
// start, and the CA that client certificates must chain to.
type ServerTLS struct {
	CertPEM, KeyPEM, CAPEM []byte
	// Hosts are the certificate's names and addresses.
	Hosts []string
	// Created tells whether this server created the Secret (it was absent).
	Created bool
}

// BootstrapPKI gives a server replica its TLS without certificates made by
// hand. The CA and an admin certificate live in a Secret: the first
// replica to find it absent creates it, and when several start at once the
// API's create decides — the losers get AlreadyExists and read the
// winner's, so every replica trusts one CA. The CA certificate is published
// in a ConfigMap for agents to mount. Each replica then issues itself a
// server certificate from the CA, for the Service's names and cluster IPs,
// localhost and o.Hosts; it is never stored.
func BootstrapPKI(ctx context.Context, o PKIOptions) (*ServerTLS, error) {
	if o.Secret == "" {
		o.Secret = DefaultPKISecret
	}
	if o.CAConfigMap == "" {
		o.CAConfigMap = DefaultCAConfigMap
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	where := o.Namespace + "/" + o.Secret
	b, created, err := loadOrCreateBundle(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := b.Check(); err != nil {
		return nil, fmt.Errorf("secret %s: %w; if it was damaged, delete it (kubectl -n %s delete secret %s) and restart the servers: they create a new CA, and admin certificates of the old one stop working", where, err, o.Namespace, o.Secret)
	}
	if created {
		o.Log.Info("created the CA and the admin certificate", "secret", where)
	}
	if o.CAConfigMap != "-" {
		if err := publishCA(ctx, o, b.CACert); err != nil {
			return nil, err
		}
	}
	hosts, err := serverHosts(ctx, o)
	if err != nil {
		return nil, err
	}
	cert, key, err := b.ServerCert(hosts, 0)
	if err != nil {
		return nil, fmt.Errorf("server certificate from %s: %w", where, err)
	}
	return &ServerTLS{CertPEM: cert, KeyPEM: key, CAPEM: b.CACert, Hosts: hosts, Created: created}, nil
}

func loadOrCreateBundle(ctx context.Context, o PKIOptions) (pki.Bundle, bool, error) {
	secrets := o.Client.CoreV1().Secrets(o.Namespace)
	where := o.Namespace + "/" + o.Secret
	s, err := secrets.Get(ctx, o.Secret, metav1.GetOptions{})
	if err == nil {
		return bundleOf(s), false, nil
	}
	if !apierrors.IsNotFound(err) {
		return pki.Bundle{}, false, fmt.Errorf("read secret %s: %w", where, err)
	}
	b, err := pki.NewBundle(0)
	if err != nil {
		return pki.Bundle{}, false, err
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: o.Secret, Namespace: o.Namespace, Labels: map[string]string{
			"app.kubernetes.io/name": "terrane", "app.kubernetes.io/component": "server"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretCACert: b.CACert, SecretCAKey: b.CAKey, SecretAdminCert: b.AdminCert, SecretAdminKey: b.AdminKey},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		return b, true, nil
	case apierrors.IsAlreadyExists(err):
		// Another replica created it first: its CA is the one.
		s, err := secrets.Get(ctx, o.Secret, metav1.GetOptions{})
		if err != nil {
			return pki.Bundle{}, false, fmt.Errorf("read secret %s (another server created it): %w", where, err)
		}
		return bundleOf(s), false, nil
	}
	return pki.Bundle{}, false, fmt.Errorf("create secret %s: %w", where, err)
}

func bundleOf(s *corev1.Secret) pki.Bundle {
	return pki.Bundle{CACert: s.Data[SecretCACert], CAKey: s.Data[SecretCAKey], AdminCert: s.Data[SecretAdminCert], AdminKey: s.Data[SecretAdminKey]}
}

// publishCA makes the ConfigMap hold the CA certificate (creating it, or
// updating a stale one: a Secret deleted and re-created by another
// replica).
func publishCA(ctx context.Context, o PKIOptions, caPEM []byte) error {
	cms := o.Client.CoreV1().ConfigMaps(o.Namespace)
	where := o.Namespace + "/" + o.CAConfigMap
	for attempt := 0; ; attempt++ {
		cm, err := cms.Get(ctx, o.CAConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: o.CAConfigMap, Namespace: o.Namespace, Labels: map[string]string{
					"app.kubernetes.io/name": "terrane", "app.kubernetes.io/component": "server"}},
				Data: map[string]string{ConfigMapCACert: string(caPEM)},
			}, metav1.CreateOptions{})
		case err != nil:
		case cm.Data[ConfigMapCACert] == string(caPEM):
			return nil
		default:
			cm = cm.DeepCopy()
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[ConfigMapCACert] = string(caPEM)
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		// Another replica wrote it meanwhile: look again.
		if (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) && attempt < 5 {
			continue
		}
		return fmt.Errorf("publish the CA in configmap %s: %w", where, err)
	}
}

// serverHosts lists the server certificate's names and addresses: the
// Service's DNS names and cluster IPs, localhost (kubectl port-forward),
// and o.Hosts, without duplicates; the Service's full name first.
func serverHosts(ctx context.Context, o PKIOptions) ([]string, error) {
	var hosts []string
	add := func(h string) {
		if a, err := netip.ParseAddr(h); err == nil {
			h = a.Unmap().String()
		}
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if o.Service != "" {
		svc := o.Service + "." + o.Namespace
		for _, h := range []string{svc + ".svc", svc + ".svc." + ClusterDomain, svc, o.Service} {
			add(h)
		}
		s, err := o.Client.CoreV1().Services(o.Namespace).Get(ctx, o.Service, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			o.Log.Warn("the server's Service does not exist: its cluster IP is not in the server certificate, so agents that reach the server through it will not trust it; create the Service and restart the servers", "service", svc)
		case err != nil:
			return nil, fmt.Errorf("read service %s: %w", svc, err)
		default:
			for _, ip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
				if ip != "" && ip != corev1.ClusterIPNone {
					add(ip)
				}
			}
		}
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, o.Hosts...) {
		add(h)
	}
	return hosts, nil
}
