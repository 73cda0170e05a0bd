//go:build linux

package network_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knast/knast/internal/network"
)

// busybox 1.35's wget crashes with -T: the tests bound it with timeout instead.
const httpdScript = "exec httpd -f -p 80 -h /www"

// hostAddr is an address of the host outside loopback and the test's networks, for "the host's own
// address"; connecting to it never leaves the host.
func hostAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !strings.HasPrefix(ipn.IP.String(), "10.231.") {
			return ipn.IP.String()
		}
	}
	return ""
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestBridgeAndPublishedPorts: two containers reach each other over the bridge; a published port reaches
// httpd in one from the host (its own address and 127.0.0.1), from the other container and from itself
// (hairpin); rm is refused while in use; after disconnect and rm nothing remains.
func TestBridgeAndPublishedPorts(t *testing.T) {
	w := newWorld(t)
	const netName, bridge, port = "kni-ports", "kni101", "28101"
	w.createNetwork(netName, "--subnet", "10.231.101.0/24", "--bridge", bridge)
	w.container("kni-web", w.bundle(httpdScript, map[string]string{"www/index.html": "hello from web\n"}))
	w.container("kni-client", w.bundle("exec sleep 600", nil))
	webIP := w.connect(netName, "kni-web", "-p", port+":80")
	clientIP := w.connect(netName, "kni-client")
	if webIP == clientIP || !strings.HasPrefix(webIP, "10.231.101.") {
		t.Fatalf("addresses %s and %s", webIP, clientIP)
	}
	w.must("start", "kni-web")
	w.must("start", "kni-client")

	// Container to container over the bridge.
	w.eventually("client -> web over the bridge", func() error {
		if r := w.exec("kni-client", "timeout", "5", "wget", "-q", "-O", "-", "http://"+webIP+"/"); r.code != 0 || r.stdout != "hello from web\n" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	if r := w.exec("kni-web", "ping", "-c", "1", "-W", "3", clientIP); r.code != 0 {
		t.Errorf("web -> client ping: %s", r)
	}
	// Inside: eth0 with the lease, lo up, default route via the gateway.
	if r := w.exec("kni-client", "ip", "route"); !strings.Contains(r.stdout, "default via 10.231.101.1 dev eth0") {
		t.Errorf("route in the container: %s", r)
	}

	// The published port from the host: 127.0.0.1 and its own address.
	urls := []string{"http://127.0.0.1:" + port + "/"}
	if a := hostAddr(t); a != "" {
		urls = append(urls, "http://"+a+":"+port+"/")
	}
	for _, u := range urls {
		w.eventually("host -> "+u, func() error {
			body, err := httpGet(u)
			if err != nil || body != "hello from web\n" {
				return fmt.Errorf("GET %s = %q, %v", u, body, err)
			}
			return nil
		})
	}
	// From the other container and from web itself (hairpin), through a host address.
	for _, id := range []string{"kni-client", "kni-web"} {
		r := w.exec(id, "timeout", "5", "wget", "-q", "-O", "-", "http://10.231.101.1:"+port+"/")
		if r.code != 0 || r.stdout != "hello from web\n" {
			t.Errorf("%s -> published port via the gateway: %s", id, r)
		}
	}

	// The table names the port; a second container cannot publish the same host port.
	table := network.NATTable(w.storage)
	tab, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
	if err != nil || !strings.Contains(string(tab), "dport "+port+" dnat to "+webIP+":80") {
		t.Errorf("nft list table ip %s: %v\n%s", table, err, tab)
	}
	t.Logf("nft list table ip %s:\n%s", table, tab)
	w.container("kni-third", w.bundle("exec sleep 600", nil))
	if r := w.knast("network", "connect", "-p", port+":8080", netName, "kni-third"); r.code == 0 || !strings.Contains(r.stderr, "already published by container kni-web") {
		t.Errorf("second publish of %s: %s", port, r)
	}

	// In use: refused, naming the containers.
	r := w.knast("network", "rm", netName)
	if r.code == 0 || !strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "kni-client, kni-web") {
		t.Errorf("rm in use: %s", r)
	}
	var ins []struct {
		network.Network
		Attachments []network.Attachment `json:"attachments"`
	}
	if err := json.Unmarshal([]byte(w.must("network", "inspect", netName).stdout), &ins); err != nil || len(ins) != 1 || len(ins[0].Attachments) != 2 || ins[0].Bridge != bridge {
		t.Fatalf("inspect: %+v, %v", ins, err)
	}
	hostIfs := []string{bridge}
	for _, a := range ins[0].Attachments {
		hostIfs = append(hostIfs, a.HostIf)
	}
	w.must("network", "disconnect", netName, "kni-web")
	w.must("network", "disconnect", netName, "kni-client")
	if r := w.knast("network", "disconnect", netName, "kni-client"); r.code == 0 || !strings.Contains(r.stderr, "not connected") {
		t.Errorf("second disconnect: %s", r)
	}
	if _, err := httpGet("http://127.0.0.1:" + port + "/"); err == nil {
		t.Error("the published port still answers after disconnect")
	}
	w.must("network", "rm", netName)
	w.assertClean(hostIfs...)
}

// TestMasqueradeToOutside: a container reaches a server in a namespace standing for the outside world,
// routed from the host over a veth; the server sees the host's address, not the container's.
func TestMasqueradeToOutside(t *testing.T) {
	w := newWorld(t)
	const netName, bridge = "kni-masq", "kni102"
	outside := fmt.Sprintf("kni-out-%d", os.Getpid())
	hostEnd, outEnd := "kni102o", "kni102i"
	for _, c := range [][]string{
		{"netns", "add", outside},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", outEnd, "netns", outside},
		{"addr", "add", "198.18.102.1/30", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
		{"-n", outside, "addr", "add", "198.18.102.2/30", "dev", outEnd},
		{"-n", outside, "link", "set", outEnd, "up"},
		{"-n", outside, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
		if c[0] == "netns" {
			t.Cleanup(func() {
				exec.Command("ip", "link", "del", hostEnd).Run()
				exec.Command("ip", "netns", "del", outside).Run()
			})
		}
	}
	ln, err := listenIn("/run/netns/"+outside, "198.18.102.2:9102")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().String()
			c.Write([]byte("from outside\n"))
			c.Close()
		}
	}()

	w.createNetwork(netName, "--subnet", "10.231.102.0/24", "--bridge", bridge)
	w.container("kni-masq", w.bundle("exec sleep 600", nil))
	ip := w.connect(netName, "kni-masq")
	w.must("start", "kni-masq")
	r := w.exec("kni-masq", "sh", "-c", "nc -w 3 198.18.102.2 9102 </dev/null")
	if r.code != 0 || !strings.Contains(r.stdout, "from outside") {
		t.Fatalf("container -> outside: %s", r)
	}
	select {
	case from := <-seen:
		if host, _, _ := net.SplitHostPort(from); host != "198.18.102.1" {
			t.Errorf("the server saw %s, want the host-side address 198.18.102.1 (container %s)", from, ip)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server saw no connection")
	}
	w.must("network", "disconnect", netName, "kni-masq")
	w.must("network", "rm", netName)
	w.assertClean(bridge)
}

// TestConcurrentConnectAndExhaustion: 20 `knast network connect` processes at once get 20 distinct
// addresses; a /30 has room for one container and then says so clearly.
func TestConcurrentConnectAndExhaustion(t *testing.T) {
	w := newWorld(t)
	const netName, bridge, small, smallBridge = "kni-many", "kni103", "kni-small", "kni104"
	w.createNetwork(netName, "--subnet", "10.231.103.0/24", "--bridge", bridge)
	w.createNetwork(small, "--subnet", "10.231.104.0/30", "--bridge", smallBridge)
	b := w.bundle("exec sleep 600", nil)
	const n = 20
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("kni-many-%02d", i)
		w.container(ids[i], b)
	}
	var wg sync.WaitGroup
	res := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = w.knastCtx(w.ctx, "network", "connect", netName, ids[i])
		}()
	}
	wg.Wait()
	addrs := map[string]string{}
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		f := strings.Fields(r.stdout)
		if len(f) != 3 {
			t.Fatalf("connect output %q", r.stdout)
		}
		if other, dup := addrs[f[2]]; dup {
			t.Errorf("%s and %s both got %s", other, ids[i], f[2])
		}
		addrs[f[2]] = ids[i]
	}
	if len(addrs) != n {
		t.Errorf("%d distinct addresses for %d containers", len(addrs), n)
	}

	if ip := w.connect(small, ids[0]); ip != "10.231.104.2" {
		t.Errorf("the /30's one address: %s", ip)
	}
	r := w.knast("network", "connect", small, ids[1])
	if r.code == 0 || !strings.Contains(r.stderr, "network "+small) || !strings.Contains(r.stderr, "10.231.104.0/30") || !strings.Contains(r.stderr, "no free address") {
		t.Errorf("exhausted /30: %s", r)
	}

	var ins []struct {
		Attachments []network.Attachment `json:"attachments"`
	}
	if err := json.Unmarshal([]byte(w.must("network", "inspect", netName, small).stdout), &ins); err != nil || len(ins) != 2 {
		t.Fatalf("inspect: %v", err)
	}
	links := []string{bridge, smallBridge}
	for _, in := range ins {
		for _, a := range in.Attachments {
			links = append(links, a.HostIf)
		}
	}
	if len(links) != 2+n+1 {
		t.Errorf("%d attachments recorded, want %d", len(links)-2, n+1)
	}
	// Deleting the containers first takes their namespaces (and pairs) away; disconnect then only
	// releases the leases, as `delete --force` after a crash must.
	for _, id := range ids {
		w.must("delete", "--force", id)
	}
	w.must("network", "disconnect", small, ids[0])
	for _, id := range ids {
		w.must("network", "disconnect", netName, id)
	}
	w.must("network", "rm", netName, small)
	w.assertClean(links...)
}
