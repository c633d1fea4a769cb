package lab

import (
	"strings"
	"testing"
	"time"
)

func TestCheckKubeOptions(t *testing.T) {
	for _, tt := range []struct {
		name    string
		o       UpOptions
		wantErr string
		want    UpOptions
	}{
		{name: "defaults", o: UpOptions{K8s: true}, want: UpOptions{K8s: true, Kubelet: KubeletLab, NodeGrace: DefaultNodeGrace}},
		{name: "grace kept", o: UpOptions{K8s: true, NodeGrace: time.Second}, want: UpOptions{K8s: true, Kubelet: KubeletLab, NodeGrace: time.Second}},
		{name: "no k8s", o: UpOptions{}, want: UpOptions{Kubelet: KubeletLab, NodeGrace: DefaultNodeGrace}},
		{name: "unknown kubelet", o: UpOptions{K8s: true, Kubelet: "docker"}, wantErr: `--kubelet "docker": use lab`},
		{name: "kubelet without k8s", o: UpOptions{Kubelet: KubeletReal}, wantErr: "--kubelet real: only with --k8s"},
		{name: "negative grace", o: UpOptions{K8s: true, NodeGrace: -time.Second}, wantErr: "--node-grace -1s"},
		{name: "no kubelet", o: UpOptions{K8s: true, NoKubelet: true}, want: UpOptions{K8s: true, Kubelet: KubeletNone, NodeGrace: DefaultNodeGrace}},
		{name: "no kubelet without k8s", o: UpOptions{NoKubelet: true}, wantErr: "no kubelet: only with --k8s"},
		{name: "no kubelet but real", o: UpOptions{K8s: true, NoKubelet: true, Kubelet: KubeletReal}, wantErr: "no kubelet: only with --k8s, the default kubelet"},
		{name: "no kubelet for pods", o: UpOptions{K8s: true, NoKubelet: true, Scenario: &Scenario{Pods: []Pod{{Name: "a"}}}}, wantErr: "a scenario without pods"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			err := checkKubeOptions(&o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("checkKubeOptions(%+v) = %v, want an error with %q", tt.o, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Kubelet != tt.want.Kubelet || o.NodeGrace != tt.want.NodeGrace {
				t.Fatalf("checkKubeOptions(%+v) → kubelet %q grace %s, want %q %s", tt.o, o.Kubelet, o.NodeGrace, tt.want.Kubelet, tt.want.NodeGrace)
			}
		})
	}
	// --kubelet real is accepted where it can run and refused, naming
	// what is missing, where it cannot.
	o := UpOptions{K8s: true, Kubelet: KubeletReal}
	err := checkKubeOptions(&o)
	if avail := realKubeletAvailable(); avail != nil {
		if err == nil || err.Error() != avail.Error() {
			t.Errorf("--kubelet real where it cannot run: %v, want %v", err, avail)
		}
	} else if err != nil {
		t.Errorf("--kubelet real where it can run: %v", err)
	}
}
