package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/knast/knast/internal/store"
)

// DefaultStorageDir is where networks.db lives unless Options.StorageDir says otherwise.
const DefaultStorageDir = "/var/lib/knast"

// defaultLockTimeout bounds the wait for networks.db: attaches of many containers started at once queue
// on its lock, each holding it for a few milliseconds.
const defaultLockTimeout = 30 * time.Second

// Options configures a Manager.
type Options struct {
	StorageDir string // default /var/lib/knast; the database is STORAGE/networks.db
	Logger     *slog.Logger
	// LockTimeout bounds the wait for the database lock (default 30s).
	LockTimeout time.Duration
}

// Manager creates networks and attaches containers to them. It holds no open file and no kernel handle,
// so it is cheap to make; every method is safe to call from many processes at once, since each change
// happens under networks.db's exclusive lock.
type Manager struct {
	st  *store.NetworkStore
	drv driver
	log *slog.Logger
}

// New returns a Manager for o.StorageDir; it touches nothing until a method is called.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return newManager(o, newDriver(o.Logger))
}

func newManager(o Options, d driver) *Manager {
	if o.StorageDir == "" {
		o.StorageDir = DefaultStorageDir
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if nn, ok := d.(natNamer); ok {
		nn.setNATTable(NATTable(o.StorageDir))
	}
	return &Manager{st: store.OpenNetworks(o.StorageDir, o.LockTimeout), drv: d, log: o.Logger}
}

// natNamer is implemented by drivers whose NAT table (or pf anchor) is named after the storage
// directory (see NATTable); without it a driver uses "knast".
type natNamer interface {
	setNATTable(name string)
}

// linkLister is implemented by drivers that can list the host's interfaces, so a new network's bridge
// name avoids those made outside this store (another --storage, another engine).
type linkLister interface {
	hostLinks(ctx context.Context) ([]string, error)
}

// CreateOptions describes a new network; zero fields get defaults.
type CreateOptions struct {
	Name    string
	Subnet  netip.Prefix // zero: a free /24 that avoids podman's, Docker's, other networks' and the host's routes
	Gateway netip.Addr   // zero: the subnet's first host address
	Bridge  string       // zero: the first free knastN
	MTU     int          // zero: the kernel's default (1500)
	IPMasq  *bool        // nil: true
	Labels  map[string]string
}

// Create makes a network, its bridge and its NAT rules.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (Network, error) {
	n := Network{
		Name: o.Name, Bridge: o.Bridge, Subnet: o.Subnet, Gateway: o.Gateway, MTU: o.MTU, IPMasq: true,
		Labels: maps.Clone(o.Labels), Created: time.Now().UTC(),
	}
	if o.IPMasq != nil {
		n.IPMasq = *o.IPMasq
	}
	if err := validName(n.Name); err != nil {
		return Network{}, err
	}
	routes, err := m.drv.hostRoutes(ctx)
	if err != nil {
		return Network{}, fmt.Errorf("network %s: %w", n.Name, err)
	}
	var links []string
	if ll, ok := m.drv.(linkLister); ok && n.Bridge == "" {
		if links, err = ll.hostLinks(ctx); err != nil {
			return Network{}, fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	if n.Subnet.IsValid() {
		// podman refuses a subnet the host already routes: traffic for it would go two ways.
		for _, r := range routes {
			if r.Bits() > 0 && r.Overlaps(n.Subnet) {
				return Network{}, fmt.Errorf("network %s: subnet %v overlaps the host's route to %v", n.Name, n.Subnet, r)
			}
		}
	}
	err = m.st.Update(ctx, func(tx *store.NetworkTx) error {
		nets, err := networks(tx)
		if err != nil {
			return err
		}
		if n.Bridge == "" {
			used := slices.Clone(links)
			for _, o := range nets {
				used = append(used, o.Bridge)
			}
			n.Bridge = pickBridge(used)
		}
		if !n.Subnet.IsValid() {
			taken := slices.Clone(routes)
			for _, o := range nets {
				taken = append(taken, o.Subnet)
			}
			if n.Subnet, err = pickSubnet(taken); err != nil {
				return fmt.Errorf("network %s: %w", n.Name, err)
			}
		}
		if err := completeNetwork(&n, nets); err != nil {
			return err
		}
		if err := putNetwork(tx, &n); err != nil {
			return err
		}
		if err := m.drv.ensureBridge(ctx, &n); err != nil {
			return m.undoBridge(ctx, &n, fmt.Errorf("network %s: %w", n.Name, err))
		}
		if err := m.syncNAT(ctx, tx, false); err != nil {
			return m.undoBridge(ctx, &n, err)
		}
		return nil
	})
	if err != nil {
		return Network{}, err
	}
	m.log.Debug("network created", "name", n.Name, "bridge", n.Bridge, "subnet", n.Subnet)
	return n, nil
}

func (m *Manager) undoBridge(ctx context.Context, n *Network, err error) error {
	if rerr := m.drv.removeBridge(context.WithoutCancel(ctx), n); rerr != nil {
		m.log.Warn("remove bridge after a failed create", "bridge", n.Bridge, "err", rerr)
	}
	return err
}

// Ensure returns network o.Name, creating it when missing. An existing network whose subnet, gateway or
// bridge differ from those o sets is an error.
func (m *Manager) Ensure(ctx context.Context, o CreateOptions) (Network, error) {
	for range 2 {
		n, err := m.Get(ctx, o.Name)
		if err == nil {
			return n, sameNetwork(n, o)
		}
		if !errors.Is(err, ErrNotExist) {
			return Network{}, err
		}
		n, err = m.Create(ctx, o)
		if !errors.Is(err, ErrExist) {
			return n, err
		}
		// Another process created it meanwhile: compare with that one.
	}
	return Network{}, fmt.Errorf("network %s: created and removed concurrently", o.Name)
}

func sameNetwork(n Network, o CreateOptions) error {
	switch {
	case o.Subnet.IsValid() && o.Subnet.Masked() != n.Subnet:
		return fmt.Errorf("network %s exists with subnet %v, not %v: %w", n.Name, n.Subnet, o.Subnet, ErrExist)
	case o.Gateway.IsValid() && o.Gateway != n.Gateway:
		return fmt.Errorf("network %s exists with gateway %v, not %v: %w", n.Name, n.Gateway, o.Gateway, ErrExist)
	case o.Bridge != "" && o.Bridge != n.Bridge:
		return fmt.Errorf("network %s exists with bridge %s, not %s: %w", n.Name, n.Bridge, o.Bridge, ErrExist)
	}
	return nil
}

// Default returns the network "knast", creating it on first use.
func (m *Manager) Default(ctx context.Context) (Network, error) {
	return m.Ensure(ctx, CreateOptions{Name: DefaultName})
}

// Get returns network name, or an error wrapping ErrNotExist.
func (m *Manager) Get(ctx context.Context, name string) (Network, error) {
	var n Network
	err := m.st.View(ctx, func(tx *store.NetworkTx) error {
		var err error
		n, err = getNetwork(tx, name)
		return err
	})
	return n, err
}

// List returns every network, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Network, error) {
	var out []Network
	err := m.st.View(ctx, func(tx *store.NetworkTx) error {
		var err error
		out, err = networks(tx)
		return err
	})
	return out, err
}

// Attachments returns the attachments of network, or of every network when network is "".
func (m *Manager) Attachments(ctx context.Context, network string) ([]Attachment, error) {
	var out []Attachment
	err := m.st.View(ctx, func(tx *store.NetworkTx) error {
		if network != "" {
			if _, err := getNetwork(tx, network); err != nil {
				return err
			}
		}
		var err error
		out, err = attachments(tx, network)
		return err
	})
	return out, err
}

// Remove deletes network name, its bridge and its rules. It fails with ErrInUse, naming the containers,
// while any is attached.
func (m *Manager) Remove(ctx context.Context, name string) error {
	return m.st.Update(ctx, func(tx *store.NetworkTx) error {
		n, err := getNetwork(tx, name)
		if err != nil {
			return err
		}
		atts, err := attachments(tx, name)
		if err != nil {
			return err
		}
		if len(atts) > 0 {
			ids := make([]string, 0, len(atts))
			for _, a := range atts {
				ids = append(ids, a.ContainerID)
			}
			return fmt.Errorf("network %s: %w by container(s) %s", name, ErrInUse, strings.Join(slices.Compact(ids), ", "))
		}
		if err := tx.DeleteNetwork(name); err != nil {
			return mapErr(err)
		}
		if err := m.drv.removeBridge(ctx, &n); err != nil {
			return fmt.Errorf("network %s: %w", name, err)
		}
		return m.syncNAT(ctx, tx, false)
	})
}

// AttachOptions describes one container's link to a network.
type AttachOptions struct {
	Network     string // "" is the default network
	ContainerID string
	IfName      string // the interface inside the container; "" is eth0
	NetNS       string // the network namespace's path, e.g. /proc/PID/ns/net
	Ports       []PortMapping
	IP          netip.Addr // a requested address; zero lets IPAM pick
}

// Attach leases an address, links the container's network namespace to the bridge and publishes its
// ports. On any failure it undoes what it did.
func (m *Manager) Attach(ctx context.Context, o AttachOptions) (Attachment, error) {
	if o.ContainerID == "" {
		return Attachment{}, errors.New("attach: container ID must not be empty")
	}
	if o.NetNS == "" {
		return Attachment{}, fmt.Errorf("attach %s: no network namespace path", o.ContainerID)
	}
	if o.IfName == "" {
		o.IfName = "eth0"
	}
	if err := validIfName("interface", o.IfName); err != nil {
		return Attachment{}, fmt.Errorf("attach %s: %w", o.ContainerID, err)
	}
	ports := slices.Clone(o.Ports)
	if err := validPorts(ports); err != nil {
		return Attachment{}, fmt.Errorf("attach %s: %w", o.ContainerID, err)
	}
	if o.IP.IsValid() && !o.IP.Is4() {
		return Attachment{}, fmt.Errorf("attach %s: address %v is not IPv4", o.ContainerID, o.IP)
	}
	if o.Network == "" {
		if _, err := m.Default(ctx); err != nil {
			return Attachment{}, err
		}
		o.Network = DefaultName
	}
	var n Network
	var a Attachment
	err := m.st.Update(ctx, func(tx *store.NetworkTx) error {
		var err error
		if n, err = getNetwork(tx, o.Network); err != nil {
			return err
		}
		all, err := attachments(tx, "")
		if err != nil {
			return err
		}
		leased := map[netip.Addr]bool{}
		hostIfs := map[string]bool{}
		var others []Attachment
		for _, x := range all {
			if x.Network == o.Network && x.ContainerID == o.ContainerID && x.IfName == o.IfName {
				return fmt.Errorf("container %s is already attached to network %s as %s (%v): %w", o.ContainerID, o.Network, o.IfName, x.Address, ErrExist)
			}
			if x.Network == o.Network {
				leased[x.Address.Addr()] = true
			}
			hostIfs[x.HostIf] = true
			if x.ContainerID != o.ContainerID {
				others = append(others, x)
			}
		}
		if err := portConflict(ports, others); err != nil {
			return err
		}
		ip, err := allocate(&n, leased, o.IP)
		if err != nil {
			return err
		}
		a = Attachment{
			Network: o.Network, ContainerID: o.ContainerID, IfName: o.IfName, NetNS: o.NetNS,
			Address: netip.PrefixFrom(ip, n.Subnet.Bits()), Gateway: n.Gateway, MAC: macFor(ip),
			Ports: ports, Created: time.Now().UTC(),
		}
		for salt := 0; ; salt++ {
			if a.HostIf = hostIfName(o.Network, o.ContainerID, o.IfName, salt); !hostIfs[a.HostIf] {
				break
			}
		}
		if err := putAttachment(tx, &a); err != nil {
			return err
		}
		// The bridge may be gone after a reboot; making sure here, under the lock, keeps Remove from
		// deleting it between the check and the attach.
		if err := m.drv.ensureBridge(ctx, &n); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		return m.syncNAT(ctx, tx, false)
	})
	if err != nil {
		return Attachment{}, fmt.Errorf("attach %s to network %s: %w", o.ContainerID, o.Network, err)
	}
	// The kernel work runs outside the lock, so attaches of many containers overlap; the lease is held.
	if err := m.drv.attach(ctx, &n, &a); err != nil {
		err = fmt.Errorf("attach %s to network %s: %w", o.ContainerID, o.Network, err)
		if uerr := m.Detach(context.WithoutCancel(ctx), a.Network, a.ContainerID, a.IfName); uerr != nil {
			err = fmt.Errorf("%w (and undoing it: %w)", err, uerr)
		}
		return Attachment{}, err
	}
	m.log.Debug("attached", "container", a.ContainerID, "network", a.Network, "address", a.Address, "hostIf", a.HostIf)
	return a, nil
}

// Detach removes the container's link and lease on network and its published ports. Nothing attached is
// not an error. ifName "" is eth0.
func (m *Manager) Detach(ctx context.Context, network, containerID, ifName string) error {
	if ifName == "" {
		ifName = "eth0"
	}
	return m.detachWhere(ctx, func(a Attachment) bool {
		return a.Network == network && a.ContainerID == containerID && a.IfName == ifName
	})
}

// DetachAll detaches the container from every network; nothing attached is not an error.
func (m *Manager) DetachAll(ctx context.Context, containerID string) error {
	return m.detachWhere(ctx, func(a Attachment) bool { return a.ContainerID == containerID })
}

// GC detaches every attachment keep rejects (CNI GC: those of containers the runtime no longer knows).
func (m *Manager) GC(ctx context.Context, keep func(Attachment) bool) error {
	return m.detachWhere(ctx, func(a Attachment) bool { return !keep(a) })
}

// detachWhere deletes the links, then the leases, of the attachments match selects, and syncs the rules,
// in one transaction: a lease is released only once its link is gone. It goes on past a failed link and
// reports every failure.
func (m *Manager) detachWhere(ctx context.Context, match func(Attachment) bool) error {
	var errs []error
	err := m.st.Update(ctx, func(tx *store.NetworkTx) error {
		all, err := attachments(tx, "")
		if err != nil {
			return err
		}
		changed := false
		for _, a := range all {
			if !match(a) {
				continue
			}
			n, err := getNetwork(tx, a.Network)
			if err != nil {
				return err
			}
			if err := m.drv.detach(ctx, &n, &a); err != nil {
				errs = append(errs, fmt.Errorf("detach %s from network %s: %w", a.ContainerID, a.Network, err))
				continue
			}
			if err := tx.DeleteAttachment(a.Network, attachmentKey(a.ContainerID, a.IfName)); err != nil {
				return mapErr(err)
			}
			changed = true
			m.log.Debug("detached", "container", a.ContainerID, "network", a.Network, "address", a.Address)
		}
		if !changed {
			return nil
		}
		return m.syncNAT(ctx, tx, false)
	})
	return errors.Join(append([]error{err}, errs...)...)
}

// Check compares the container's attachment with the kernel (CNI CHECK).
func (m *Manager) Check(ctx context.Context, network, containerID, ifName string) error {
	if ifName == "" {
		ifName = "eth0"
	}
	var n Network
	var a Attachment
	err := m.st.View(ctx, func(tx *store.NetworkTx) error {
		var err error
		if n, err = getNetwork(tx, network); err != nil {
			return err
		}
		atts, err := attachments(tx, network)
		if err != nil {
			return err
		}
		for _, x := range atts {
			if x.ContainerID == containerID && x.IfName == ifName {
				a = x
				return nil
			}
		}
		return fmt.Errorf("container %s on network %s as %s: %w", containerID, network, ifName, ErrNotExist)
	})
	if err != nil {
		return err
	}
	if err := m.drv.check(ctx, &n, &a); err != nil {
		return fmt.Errorf("check %s on network %s: %w", containerID, network, err)
	}
	return nil
}

// Sync rebuilds knast's NAT table from the store, repairing it after a reboot or a flush by hand.
func (m *Manager) Sync(ctx context.Context) error {
	return m.st.Locked(ctx, func(tx *store.NetworkTx) error { return m.syncNAT(ctx, tx, true) })
}

// natChecker is implemented by drivers that can tell cheaply that the kernel already holds the rules a
// state asks for, and then leave them alone.
type natChecker interface {
	syncNATIfChanged(ctx context.Context, nets []Network, atts []Attachment) error
}

// syncNAT hands the driver the state tx sees; the caller holds the exclusive lock, so no other process
// applies an older state over it. Unless force (Sync, the repair), a driver that can skip an unchanged
// table does.
func (m *Manager) syncNAT(ctx context.Context, tx *store.NetworkTx, force bool) error {
	nets, err := networks(tx)
	if err != nil {
		return err
	}
	atts, err := attachments(tx, "")
	if err != nil {
		return err
	}
	sync := m.drv.syncNAT
	if nc, ok := m.drv.(natChecker); ok && !force {
		sync = nc.syncNATIfChanged
	}
	if err := sync(ctx, nets, atts); err != nil {
		return fmt.Errorf("NAT rules: %w", err)
	}
	return nil
}

// mapErr turns the store's sentinels into this package's.
func mapErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotExist) && !errors.Is(err, ErrNotExist):
		return fmt.Errorf("%w: %w", err, ErrNotExist)
	case errors.Is(err, store.ErrExist) && !errors.Is(err, ErrExist):
		return fmt.Errorf("%w: %w", err, ErrExist)
	}
	return err
}

func getNetwork(tx *store.NetworkTx, name string) (Network, error) {
	var n Network
	data, err := tx.Network(name)
	if err != nil {
		return n, fmt.Errorf("network %s: %w", name, ErrNotExist)
	}
	if err := json.Unmarshal(data, &n); err != nil {
		return n, fmt.Errorf("decode network %s: %w", name, err)
	}
	return n, nil
}

func networks(tx *store.NetworkTx) ([]Network, error) {
	recs, err := tx.Networks()
	if err != nil {
		return nil, err
	}
	out := make([]Network, 0, len(recs))
	for _, r := range recs {
		var n Network
		if err := json.Unmarshal(r.Data, &n); err != nil {
			return nil, fmt.Errorf("decode network %s: %w", r.Key, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func attachments(tx *store.NetworkTx, network string) ([]Attachment, error) {
	recs, err := tx.Attachments(network)
	if err != nil {
		return nil, err
	}
	out := make([]Attachment, 0, len(recs))
	for _, r := range recs {
		var a Attachment
		if err := json.Unmarshal(r.Data, &a); err != nil {
			return nil, fmt.Errorf("decode attachment %q: %w", r.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func putNetwork(tx *store.NetworkTx, n *Network) error {
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode network %s: %w", n.Name, err)
	}
	return tx.PutNetwork(n.Name, data)
}

func putAttachment(tx *store.NetworkTx, a *Attachment) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attachment %s: %w", a.ContainerID, err)
	}
	return mapErr(tx.PutAttachment(a.Network, attachmentKey(a.ContainerID, a.IfName), data))
}
