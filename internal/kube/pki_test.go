package kube

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBootstrapPKI: replicas starting at once agree on one CA (the API's
// create decides), publish it in the ConfigMap, and each issues itself a
// server certificate for the Service's names and cluster IP; a later start
// reuses the Secret; a damaged Secret is refused with the fix.
func TestBootstrapPKI(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	createNamespace(t, ctx, cs, agentNS, nil)
	svc, err := cs.CoreV1().Services(agentNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultService},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "api", Port: 7443}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := PKIOptions{Client: cs, Namespace: agentNS, Service: DefaultService, Log: quietLog()}
	const replicas = 4
	results := make([]*ServerTLS, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			oi := o
			oi.Hosts = []string{"192.0.2." + string(rune('1'+i))}
			tl, err := BootstrapPKI(ctx, oi)
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			results[i] = tl
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	created := 0
	for i, r := range results {
		if r.Created {
			created++
		}
		if string(r.CAPEM) != string(results[0].CAPEM) {
			t.Fatalf("replica %d trusts another CA than replica 0", i)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(r.CAPEM)
		blk, _ := pem.Decode(r.CertPEM)
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{svc.Spec.ClusterIP, "terrane-server.terrane-system.svc", "terrane-server.terrane-system.svc.cluster.local", "localhost", "127.0.0.1", "192.0.2." + string(rune('1'+i))} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
				t.Errorf("replica %d's certificate for %s: %v (hosts %v)", i, host, err, r.Hosts)
			}
		}
	}
	if created != 1 {
		t.Fatalf("%d replicas say they created the Secret, want exactly 1", created)
	}
	cm, err := cs.CoreV1().ConfigMaps(agentNS).Get(ctx, DefaultCAConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data[ConfigMapCACert] != string(results[0].CAPEM) {
		t.Fatal("the ConfigMap does not hold the Secret's CA")
	}
	if strings.Contains(cm.Data[ConfigMapCACert], "PRIVATE KEY") {
		t.Fatal("the ConfigMap holds a private key")
	}

	// A later start reuses the CA.
	again, err := BootstrapPKI(ctx, o)
	if err != nil || again.Created || string(again.CAPEM) != string(results[0].CAPEM) {
		t.Fatalf("a restart: created %v, same CA %v, err %v", again != nil && again.Created, again != nil && string(again.CAPEM) == string(results[0].CAPEM), err)
	}

	// A damaged Secret: refused, saying how to start over.
	s, err := cs.CoreV1().Secrets(agentNS).Get(ctx, DefaultPKISecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(s.Data, SecretCAKey)
	if _, err := cs.CoreV1().Secrets(agentNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := BootstrapPKI(ctx, o); err == nil || !strings.Contains(err.Error(), "kubectl -n terrane-system delete secret terrane-pki") {
		t.Fatalf("BootstrapPKI on a Secret without the CA key: %v, want the fix", err)
	}
}
