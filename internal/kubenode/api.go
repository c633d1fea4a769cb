package kubenode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// apiReader reads objects from the Kubernetes API with a kubeconfig's
// identity. The node runner needs a few reads only (its Node's
// conditions), so it speaks HTTP and JSON itself: client-go stays in the
// packages that own the Kubernetes integration.
type apiReader struct {
	server string
	token  string
	hc     *http.Client
}

// kubeconfigFile is the part of a kubeconfig the reader understands: the
// current context's cluster (server, CA) and user (token or client
// certificate), files or inline data.
type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token                 string `json:"token"`
			ClientCertificate     string `json:"client-certificate"`
			ClientCertificateData string `json:"client-certificate-data"`
			ClientKey             string `json:"client-key"`
			ClientKeyData         string `json:"client-key-data"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// newAPIReader loads a kubeconfig.
func newAPIReader(path string) (*apiReader, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	clusterName, userName := "", ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext || kc.CurrentContext == "" {
			clusterName, userName = c.Context.Cluster, c.Context.User
			break
		}
	}
	r := &apiReader{}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	found := false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		r.server = c.Cluster.Server
		ca, err := fileOrData(c.Cluster.CertificateAuthority, c.Cluster.CertificateAuthorityData)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: cluster %s: certificate-authority: %w", path, c.Name, err)
		}
		if ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("kubeconfig %s: cluster %s: certificate-authority holds no PEM certificate", path, c.Name)
			}
			tlsConf.RootCAs = pool
		}
	}
	if !found || r.server == "" {
		return nil, fmt.Errorf("kubeconfig %s: no cluster with a server for context %q", path, kc.CurrentContext)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		r.token = u.User.Token
		cert, err := fileOrData(u.User.ClientCertificate, u.User.ClientCertificateData)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: user %s: client-certificate: %w", path, u.Name, err)
		}
		key, err := fileOrData(u.User.ClientKey, u.User.ClientKeyData)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: user %s: client-key: %w", path, u.Name, err)
		}
		if cert != nil && key != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %s: %w", path, u.Name, err)
			}
			tlsConf.Certificates = []tls.Certificate{pair}
		}
	}
	r.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	return r, nil
}

func fileOrData(file, data string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(data)
	}
	if file != "" {
		return os.ReadFile(file)
	}
	return nil, nil
}

// errNotFound: the API answered 404.
type errNotFound struct{ path string }

func (e errNotFound) Error() string { return e.path + ": not found" }

// get reads path into out.
func (r *apiReader) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.server+path, nil)
	if err != nil {
		return err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound{path}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}

// NodeStatus is what the node runner reads of its Node.
type NodeStatus struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ready     bool              `json:"ready"`
	Reason    string            `json:"reason,omitempty"`
	Addresses map[string]string `json:"addresses,omitempty"`
}

// node reads the Node named name.
func (r *apiReader) node(ctx context.Context, name string) (NodeStatus, error) {
	var n struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type, Status, Reason, Message string
			} `json:"conditions"`
			Addresses []struct {
				Type, Address string
			} `json:"addresses"`
		} `json:"status"`
	}
	if err := r.get(ctx, "/api/v1/nodes/"+url.PathEscape(name), &n); err != nil {
		return NodeStatus{}, err
	}
	s := NodeStatus{Name: name, Labels: n.Metadata.Labels, Addresses: map[string]string{}, Reason: "no Ready condition yet"}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			s.Ready = c.Status == "True"
			s.Reason = c.Reason + ": " + c.Message
		}
	}
	for _, a := range n.Status.Addresses {
		s.Addresses[a.Type] = a.Address
	}
	return s, nil
}
