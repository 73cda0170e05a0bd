package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	bolt "go.etcd.io/bbolt"

	"github.com/knast/knast/internal/network"
)

// Networks is what the plugin needs of the network manager (*network.Manager).
type Networks interface {
	Ensure(ctx context.Context, o network.CreateOptions) (network.Network, error)
	Get(ctx context.Context, name string) (network.Network, error)
	Attachments(ctx context.Context, network string) ([]network.Attachment, error)
	Attach(ctx context.Context, o network.AttachOptions) (network.Attachment, error)
	Detach(ctx context.Context, network, containerID, ifName string) error
	Check(ctx context.Context, network, containerID, ifName string) error
	GC(ctx context.Context, keep func(network.Attachment) bool) error
}

// Args are one invocation's CNI_* variables and stdin.
type Args struct {
	ContainerID string
	Netns       string
	IfName      string
	Args        string // CNI_ARGS
	StdinData   []byte
}

// Plugin runs the CNI commands against the network manager a config's dataDir names.
type Plugin struct {
	// Open returns the network manager of a data directory.
	Open func(dataDir string) Networks
	// MAC returns a host interface's MAC address, "" when it cannot be read; nil reads the kernel's.
	MAC func(ifName string) string
}

// Add ensures the network, attaches the container and returns the result in the config's version.
func (p *Plugin) Add(ctx context.Context, a Args) (types.Result, error) {
	c, err := ParseConfig(a.StdinData, a.Args)
	if err != nil {
		return nil, err
	}
	if a.Netns == "" {
		return nil, types.NewError(types.ErrInvalidNetNS, "ADD needs CNI_NETNS", "")
	}
	m := p.Open(c.DataDir)
	n, err := m.Ensure(ctx, c.CreateOptions())
	if errors.Is(err, network.ErrExist) {
		// Ensure refuses a network that exists with another subnet or bridge: say which.
		if cur, gerr := m.Get(ctx, c.Name); gerr == nil {
			if merr := c.Matches(cur); merr != nil {
				return nil, merr
			}
		}
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("network %s: %v", c.Name, err), "")
	}
	if err != nil {
		return nil, classify(fmt.Errorf("network %s: %w", c.Name, err))
	}
	if err := c.Matches(n); err != nil {
		return nil, err
	}
	att, err := m.Attach(ctx, network.AttachOptions{
		Network:     c.Name,
		ContainerID: a.ContainerID,
		IfName:      a.IfName,
		NetNS:       a.Netns,
		Ports:       c.Ports,
		IP:          c.IP,
	})
	if err != nil {
		return nil, classify(fmt.Errorf("attach %s/%s to network %s: %w", a.ContainerID, a.IfName, c.Name, err))
	}
	macs := map[string]string{}
	for _, name := range []string{n.Bridge, att.HostIf} {
		if mac := p.mac(name); mac != "" {
			macs[name] = mac
		}
	}
	r, err := BuildResult(c, n, att, macs).GetAsVersion(c.CNIVersion)
	if err != nil {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("result as CNI %s: %v", c.CNIVersion, err), "")
	}
	return r, nil
}

// Del detaches the container; an attachment, netns or network that is already gone is success.
func (p *Plugin) Del(ctx context.Context, a Args) error {
	c, err := ParseConfig(a.StdinData, a.Args)
	if err != nil {
		return err
	}
	if !hasStore(c.DataDir) {
		return nil // nothing was ever attached here; don't create a store to find that out
	}
	err = p.Open(c.DataDir).Detach(ctx, c.Name, a.ContainerID, a.IfName)
	if err != nil && !errors.Is(err, network.ErrNotExist) {
		return classify(fmt.Errorf("detach %s/%s from network %s: %w", a.ContainerID, a.IfName, c.Name, err))
	}
	return nil
}

// Check compares the prevResult with the stored attachment, then the attachment with the kernel.
func (p *Plugin) Check(ctx context.Context, a Args) error {
	c, err := ParseConfig(a.StdinData, a.Args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return invalid("network config %s: CHECK needs a prevResult", c.Name)
	}
	m := p.Open(c.DataDir)
	n, err := m.Get(ctx, c.Name)
	if err != nil {
		return classify(fmt.Errorf("network %s: %w", c.Name, err))
	}
	if err := c.Matches(n); err != nil {
		return err
	}
	atts, err := m.Attachments(ctx, c.Name)
	if err != nil {
		return classify(fmt.Errorf("network %s: attachments: %w", c.Name, err))
	}
	att, ok := find(atts, a.ContainerID, a.IfName)
	if !ok {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("network %s: no attachment of %s/%s", c.Name, a.ContainerID, a.IfName), "")
	}
	if err := CheckResult(c.PrevResult, a.IfName, a.Netns, att); err != nil {
		return classify(fmt.Errorf("network %s: %w", c.Name, err))
	}
	if err := m.Check(ctx, c.Name, a.ContainerID, a.IfName); err != nil {
		return classify(fmt.Errorf("network %s: %w", c.Name, err))
	}
	return nil
}

// Status reports whether ADD can succeed: the network store is readable, the network (when it exists)
// matches the config, and its subnet has a free address. A network not made yet is ready: ADD makes it.
func (p *Plugin) Status(ctx context.Context, a Args) error {
	c, err := ParseConfig(a.StdinData, a.Args)
	if err != nil {
		return err
	}
	if st, err := os.Stat(c.DataDir); err == nil && !st.IsDir() {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("dataDir %s is not a directory", c.DataDir), "")
	}
	if !hasStore(c.DataDir) {
		return nil // ADD creates the store and the network
	}
	m := p.Open(c.DataDir)
	n, err := m.Get(ctx, c.Name)
	if errors.Is(err, network.ErrNotExist) {
		return nil
	}
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %s: %v", c.Name, err), "")
	}
	if err := c.Matches(n); err != nil {
		return err
	}
	atts, err := m.Attachments(ctx, c.Name)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %s: attachments: %v", c.Name, err), "")
	}
	if capa := Capacity(n.Subnet); len(atts) >= capa {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %s: subnet %s is full (%d of %d addresses leased)", c.Name, n.Subnet, len(atts), capa), "")
	}
	return nil
}

// GC detaches every attachment of the config's network that is not in cni.dev/valid-attachments;
// attachments of other networks are kept.
func (p *Plugin) GC(ctx context.Context, a Args) error {
	c, err := ParseConfig(a.StdinData, a.Args)
	if err != nil {
		return err
	}
	if !hasStore(c.DataDir) {
		return nil
	}
	valid := make(map[types.GCAttachment]bool, len(c.ValidAttachments))
	for _, v := range c.ValidAttachments {
		valid[v] = true
	}
	keep := func(at network.Attachment) bool {
		return at.Network != c.Name || valid[types.GCAttachment{ContainerID: at.ContainerID, IfName: at.IfName}]
	}
	if err := p.Open(c.DataDir).GC(ctx, keep); err != nil && !errors.Is(err, network.ErrNotExist) {
		return classify(fmt.Errorf("network %s: gc: %w", c.Name, err))
	}
	return nil
}

// storeFile is the network store's file in a data directory (network.Options.StorageDir).
const storeFile = "networks.db"

// hasStore reports whether dataDir holds a network store. Only a definite "does not exist" is false:
// any other error lets the manager report it.
func hasStore(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, storeFile))
	return !errors.Is(err, fs.ErrNotExist)
}

func (p *Plugin) mac(name string) string {
	if p.MAC != nil {
		return p.MAC(name)
	}
	itf, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	return itf.HardwareAddr.String()
}

func find(atts []network.Attachment, containerID, ifName string) (network.Attachment, bool) {
	for _, at := range atts {
		if at.ContainerID == containerID && at.IfName == ifName {
			return at, true
		}
	}
	return network.Attachment{}, false
}

// classify gives an error its CNI code: 11 (try again later) for what passes (a busy store, an exhausted
// subnet or a network in use), 3 for an unknown attachment, 999 otherwise. A *types.Error keeps its own.
func classify(err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		if te == err {
			return te
		}
		return types.NewError(te.Code, err.Error(), te.Details)
	}
	code := types.ErrInternal
	switch {
	case errors.Is(err, bolt.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, network.ErrExhausted), errors.Is(err, network.ErrInUse):
		code = types.ErrTryAgainLater
	case errors.Is(err, network.ErrNotExist):
		code = types.ErrUnknownContainer
	}
	return types.NewError(code, err.Error(), "")
}
