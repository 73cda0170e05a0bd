package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/knast/knast/internal/network/bsdnet"
)

func TestParseNetworkAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		names   []string
		ports   int
		etc     bool
		wantErr string
	}{
		{name: "one network", ann: map[string]string{annNetwork: "web"}, names: []string{"web"}},
		{name: "default aliases", ann: map[string]string{annNetwork: "default, bridge2"}, names: []string{"knast", "bridge2"}},
		{name: "ports and etc", ann: map[string]string{annNetwork: "web", annPorts: "8080:80, 127.0.0.1:53:53/udp", annEtc: "rootfs"},
			names: []string{"web"}, ports: 2, etc: true},
		{name: "range", ann: map[string]string{annNetwork: "web", annPorts: "8080-8082:80-82"}, names: []string{"web"}, ports: 3},
		{name: "twice", ann: map[string]string{annNetwork: "web,web"}, wantErr: `network "web" listed twice`},
		{name: "empty list", ann: map[string]string{annNetwork: " , "}, wantErr: "no network named"},
		{name: "bad port", ann: map[string]string{annNetwork: "web", annPorts: "99999:80"}, wantErr: annPorts},
		{name: "bad etc", ann: map[string]string{annNetwork: "web", annEtc: "yes"}, wantErr: `"yes" is not "rootfs"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseNetworkAnnotations(tt.ann)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.names, tt.names) || len(p.ports) != tt.ports || p.etc != tt.etc {
				t.Errorf("plan = %+v, want names %v, %d ports, etc %v", p, tt.names, tt.ports, tt.etc)
			}
		})
	}
	if (networker{}).Wants(map[string]string{annPorts: "80:80"}) {
		t.Error("Wants without a network annotation")
	}
}

// The FreeBSD network driver starts knast with bsdnet.HelperVerb: the verb table must have it, hidden.
func TestVNETHelperVerb(t *testing.T) {
	c, ok := commands()[bsdnet.HelperVerb]
	if !ok || !c.hidden {
		t.Fatalf("verb %q: present %v, hidden %v", bsdnet.HelperVerb, ok, c.hidden)
	}
}
