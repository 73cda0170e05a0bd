//go:build freebsd

package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/network/bsdnet"
)

// bsdDriver acts through if_bridge/if_epair ioctls, the routing socket, sysctl and pf's table ioctls;
// every byte it hands the kernel comes from bsdnet. It runs no userland tool. Interfaces and routes
// inside a container's VNET jail are set through sockets created in that jail by a short-lived helper
// (bsdnet.HelperVerb), which attaches itself to the jail, so knast never jail_attaches its own process.
type bsdDriver struct {
	log    *slog.Logger
	anchor string // the pf anchor whose tables knast fills
}

func newDriver(log *slog.Logger) driver { return &bsdDriver{log: log, anchor: "knast"} }

func (d *bsdDriver) setNATTable(name string) { d.anchor = name }

// bsdnet encodes the LP64 layouts (every 64-bit FreeBSD port Go supports is little-endian); 32-bit
// FreeBSD would need others.
const lp64 = unsafe.Sizeof(uintptr(0)) == 8

func supported() error {
	if !lp64 {
		return fmt.Errorf("knast networking on freebsd/%s: %w (64-bit little-endian only)", runtime.GOARCH, errors.ErrUnsupported)
	}
	return nil
}

func ioctl(fd int, req uint32, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// inetSocket is the host's AF_INET datagram socket that interface ioctls go through.
func inetSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket(AF_INET): %w", err)
	}
	return fd, nil
}

// ifreqCall runs an ifreq ioctl on ifname, set by fill; it returns the ifreq as the kernel left it.
func ifreqCall(fd int, req uint32, ifname string, fill func(r *bsdnet.Ifreq)) (*bsdnet.Ifreq, error) {
	r, err := bsdnet.NewIfreq(ifname)
	if err != nil {
		return nil, err
	}
	if fill != nil {
		fill(r)
	}
	if err := ioctl(fd, req, unsafe.Pointer(&r[0])); err != nil {
		return nil, err
	}
	return r, nil
}

func ifExists(fd int, ifname string) (bool, error) {
	_, err := ifreqCall(fd, bsdnet.SIOCGIFFLAGS, ifname, nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENXIO):
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", ifname, err)
}

func ifUp(fd int, ifname string) error {
	r, err := ifreqCall(fd, bsdnet.SIOCGIFFLAGS, ifname, nil)
	if err != nil {
		return fmt.Errorf("%s flags: %w", ifname, err)
	}
	if r.Flags()&bsdnet.IFF_UP != 0 {
		return nil
	}
	f := r.Flags() | bsdnet.IFF_UP
	if _, err := ifreqCall(fd, bsdnet.SIOCSIFFLAGS, ifname, func(r *bsdnet.Ifreq) { r.SetFlags(f) }); err != nil {
		return fmt.Errorf("%s up: %w", ifname, err)
	}
	return nil
}

// ifCreate clones an interface of class ("bridge", "epair") and returns the kernel's name for it.
func ifCreate(fd int, class string) (string, error) {
	r, err := ifreqCall(fd, bsdnet.SIOCIFCREATE2, class, func(r *bsdnet.Ifreq) { r.SetData(0) })
	if err != nil {
		return "", fmt.Errorf("create %s: %w", class, err)
	}
	return r.Name(), nil
}

// ifDestroy destroys a cloned interface; a missing one is not an error.
func ifDestroy(fd int, ifname string) error {
	_, err := ifreqCall(fd, bsdnet.SIOCIFDESTROY, ifname, nil)
	if err == nil || errors.Is(err, unix.ENXIO) {
		return nil
	}
	return fmt.Errorf("destroy %s: %w", ifname, err)
}

func ifRename(fd int, from, to string) error {
	if from == to {
		return nil
	}
	name, err := bsdnet.IfName(to)
	if err != nil {
		return err
	}
	var pin runtime.Pinner
	pin.Pin(&name[0])
	defer pin.Unpin()
	if _, err := ifreqCall(fd, bsdnet.SIOCSIFNAME, from, func(r *bsdnet.Ifreq) {
		r.SetData(uint64(uintptr(unsafe.Pointer(&name[0]))))
	}); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return nil
}

func ifMTU(fd int, ifname string) (int, error) {
	r, err := ifreqCall(fd, bsdnet.SIOCGIFMTU, ifname, nil)
	if err != nil {
		return 0, fmt.Errorf("%s mtu: %w", ifname, err)
	}
	return int(r.Int()), nil
}

func ifSetMTU(fd int, ifname string, mtu int) error {
	if cur, err := ifMTU(fd, ifname); err != nil || cur == mtu {
		return err
	}
	if _, err := ifreqCall(fd, bsdnet.SIOCSIFMTU, ifname, func(r *bsdnet.Ifreq) { r.SetInt(int32(mtu)) }); err != nil {
		return fmt.Errorf("%s mtu %d: %w", ifname, mtu, err)
	}
	return nil
}

// ifAddAddr gives ifname addr; the address being there already is not an error.
func ifAddAddr(fd int, ifname string, addr netip.Prefix) error {
	req, err := bsdnet.InAliasreq(ifname, addr)
	if err != nil {
		return err
	}
	if err := ioctl(fd, bsdnet.SIOCAIFADDR, unsafe.Pointer(&req[0])); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s address %v: %w", ifname, addr, err)
	}
	return nil
}

func ifAddr(fd int, ifname string) (netip.Addr, error) {
	r, err := ifreqCall(fd, bsdnet.SIOCGIFADDR, ifname, nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s address: %w", ifname, err)
	}
	return r.Addr()
}

// bridgeCmd runs a bridge command on member (SIOCSDRVSPEC, or SIOCGDRVSPEC to read).
func bridgeCmd(fd int, req uint32, bridge string, cmd uint64, member string) error {
	br, err := bsdnet.Ifbreq(member)
	if err != nil {
		return err
	}
	var pin runtime.Pinner
	pin.Pin(&br[0])
	defer pin.Unpin()
	drv, err := bsdnet.Ifdrv(bridge, cmd, bsdnet.SizeofIfbreq, uint64(uintptr(unsafe.Pointer(&br[0]))))
	if err != nil {
		return err
	}
	return ioctl(fd, req, unsafe.Pointer(&drv[0]))
}

// sysctlSetUint32 writes a sysctl by name (__sysctlbyname, FreeBSD 12.2+).
func sysctlSetUint32(name string, v uint32) error {
	if cur, err := unix.SysctlUint32(name); err == nil && cur == v {
		return nil
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall6(unix.SYS___SYSCTLBYNAME, uintptr(unsafe.Pointer(p)), uintptr(len(name)), 0, 0,
		uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v)); e != 0 {
		return fmt.Errorf("sysctl %s=%d: %w", name, v, e)
	}
	return nil
}

func (d *bsdDriver) ensureBridge(ctx context.Context, n *Network) error {
	if err := supported(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ok, err := ifExists(fd, n.Bridge)
	if err != nil {
		return err
	}
	if !ok {
		made, err := ifCreate(fd, "bridge")
		if err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		if err := ifRename(fd, made, n.Bridge); err != nil {
			return errors.Join(err, ifDestroy(fd, made))
		}
		d.log.Debug("bridge created", "bridge", n.Bridge)
	}
	if n.MTU > 0 {
		if err := ifSetMTU(fd, n.Bridge, n.MTU); err != nil {
			return err
		}
	}
	if err := ifAddAddr(fd, n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits())); err != nil {
		return err
	}
	if err := ifUp(fd, n.Bridge); err != nil {
		return err
	}
	return sysctlSetUint32("net.inet.ip.forwarding", 1)
}

func (d *bsdDriver) removeBridge(ctx context.Context, n *Network) error {
	if err := supported(); err != nil {
		return err
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ifDestroy(fd, n.Bridge)
}

// jailID resolves Attachment.NetNS, a jail ID or name, to the ID (jail_get(2) with "name" in and "jid"
// out, as libjail's jail_getid does).
func jailID(netns string) (int, error) {
	jid, name, err := bsdnet.Jail(netns)
	if err != nil || jid > 0 {
		return jid, err
	}
	key, val := []byte("name\x00"), []byte(name+"\x00")
	jkey := []byte("jid\x00")
	var out int32
	iov := make([]unix.Iovec, 4)
	for i, b := range [][]byte{key, val, jkey} {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	iov[3].Base = (*byte)(unsafe.Pointer(&out))
	iov[3].SetLen(int(unsafe.Sizeof(out)))
	var pin runtime.Pinner
	for _, b := range [][]byte{key, val, jkey} {
		pin.Pin(&b[0])
	}
	pin.Pin(&out)
	defer pin.Unpin()
	if _, _, e := unix.Syscall(unix.SYS_JAIL_GET, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), 0); e != 0 {
		return 0, fmt.Errorf("jail %q: %w", name, e)
	}
	if out <= 0 {
		return 0, fmt.Errorf("jail %q: kernel returned jid %d", name, out)
	}
	return int(out), nil
}

// jailSockets starts the helper attached to jid and receives its AF_INET and PF_ROUTE sockets, which
// belong to the jail's VNET: ioctls and routing messages through them act on the jail's stack.
func jailSockets(ctx context.Context, jid int) (inet, route int, err error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "vnet-helper")
	theirs := os.NewFile(uintptr(pair[1]), "vnet-helper-child")
	defer ours.Close()
	exe, err := os.Executable()
	if err != nil {
		theirs.Close()
		return -1, -1, fmt.Errorf("vnet helper: %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, bsdnet.HelperVerb, strconv.Itoa(jid))
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stderr = &stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return -1, -1, fmt.Errorf("vnet helper: %w", err)
	}
	fds, rerr := recvFDs(int(ours.Fd()), bsdnet.HelperFDs)
	if werr := cmd.Wait(); werr != nil && rerr == nil {
		rerr = werr
	}
	if rerr != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, -1, fmt.Errorf("vnet helper in jail %d: %w: %s", jid, rerr, strings.TrimSpace(stderr.String()))
	}
	return fds[0], fds[1], nil
}

func recvFDs(fd, n int) ([]int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(n*4))
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive sockets: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive sockets: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("receive sockets: %w", err)
		}
		fds = append(fds, got...)
	}
	if len(fds) != n {
		return fds, fmt.Errorf("receive sockets: got %d descriptors, want %d", len(fds), n)
	}
	return fds, nil
}

// ServeJailSockets is the body of the hidden verb bsdnet.HelperVerb ("knast vnet-sockets JID", the unix
// socket to answer on as fd 3): it attaches this short-lived process to jail jid, opens an AF_INET
// datagram socket and a PF_ROUTE socket in the jail's VNET and sends both back with SCM_RIGHTS.
func ServeJailSockets(jid int, conn *os.File) error {
	if jid <= 0 {
		return fmt.Errorf("vnet helper: jail ID %d", jid)
	}
	runtime.LockOSThread()
	if _, _, e := unix.RawSyscall(unix.SYS_JAIL_ATTACH, uintptr(jid), 0, 0); e != 0 {
		return fmt.Errorf("vnet helper: jail_attach %d: %w", jid, e)
	}
	// A jail without its own VNET shares the host's stack: sockets made there would act on the host.
	if v, err := unix.SysctlUint32("security.jail.vnet"); err != nil || v != 1 {
		return errors.Join(fmt.Errorf("vnet helper: jail %d has no VNET (vnet=%d)", jid, v), err)
	}
	inet, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vnet helper: socket(AF_INET): %w", err)
	}
	route, err := unix.Socket(unix.AF_ROUTE, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("vnet helper: socket(PF_ROUTE): %w", err)
	}
	if err := unix.Sendmsg(int(conn.Fd()), []byte{'k'}, unix.UnixRights(inet, route), nil, 0); err != nil {
		return fmt.Errorf("vnet helper: send sockets: %w", err)
	}
	return nil
}

// routeCall writes m on the routing socket fd; for RTM_GET it reads until the kernel's answer to it.
func routeCall(fd int, m bsdnet.RouteMessage) (bsdnet.RouteMessage, error) {
	b, err := m.Marshal()
	if err != nil {
		return m, err
	}
	if _, err := unix.Write(fd, b); err != nil {
		return m, err
	}
	if m.Type != bsdnet.RTM_GET {
		return m, nil
	}
	buf := make([]byte, 2048)
	for range 64 {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return m, fmt.Errorf("read routing socket: %w", err)
		}
		for rest := buf[:n]; len(rest) > 0; {
			got, size, ok, err := bsdnet.ParseRouteMessage(rest)
			if err != nil {
				break
			}
			if ok && got.Type == bsdnet.RTM_GET && got.Seq == m.Seq && got.Pid == int32(os.Getpid()) {
				if got.Errno != 0 {
					return got, unix.Errno(got.Errno)
				}
				return got, nil
			}
			rest = rest[size:]
		}
	}
	return m, errors.New("routing socket: no answer to RTM_GET")
}

func (d *bsdDriver) attach(ctx context.Context, n *Network, a *Attachment) (err error) {
	if err := supported(); err != nil {
		return err
	}
	jid, err := jailID(a.NetNS)
	if err != nil {
		return err
	}
	if a.MAC == "" {
		a.MAC = macFor(a.Address.Addr())
	}
	mac, err := net.ParseMAC(a.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %w", a.MAC, err)
	}
	if len(mac) != 6 {
		return fmt.Errorf("MAC %q: want an Ethernet address", a.MAC)
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// A crash may have left the pair behind: destroying one end destroys both, wherever the other is.
	if err := ifDestroy(fd, a.HostIf); err != nil {
		return err
	}
	aEnd, err := ifCreate(fd, "epair")
	if err != nil {
		return err
	}
	hostEnd := aEnd
	defer func() {
		if err != nil {
			err = errors.Join(err, ifDestroy(fd, hostEnd))
		}
	}()
	bEnd, err := bsdnet.EpairPeer(aEnd)
	if err != nil {
		return err
	}
	if err := ifRename(fd, aEnd, a.HostIf); err != nil {
		return err
	}
	hostEnd = a.HostIf
	mtu := n.MTU
	if mtu <= 0 {
		if mtu, err = ifMTU(fd, n.Bridge); err != nil {
			return err
		}
	}
	for _, ifname := range []string{a.HostIf, bEnd} {
		if err := ifSetMTU(fd, ifname, mtu); err != nil {
			return err
		}
	}
	if _, err := ifreqCall(fd, bsdnet.SIOCSIFLLADDR, bEnd, func(r *bsdnet.Ifreq) {
		_ = r.SetLinkAddr(mac) // its length is checked above
	}); err != nil {
		return fmt.Errorf("%s lladdr %s: %w", bEnd, a.MAC, err)
	}
	if err := bridgeCmd(fd, bsdnet.SIOCSDRVSPEC, n.Bridge, bsdnet.BRDGADD, a.HostIf); err != nil {
		return fmt.Errorf("add %s to bridge %s: %w", a.HostIf, n.Bridge, err)
	}
	if err := ifUp(fd, a.HostIf); err != nil {
		return err
	}
	r, err := ifreqCall(fd, bsdnet.SIOCSIFVNET, bEnd, func(r *bsdnet.Ifreq) { r.SetInt(int32(jid)) })
	if err != nil {
		return fmt.Errorf("move %s into jail %s: %w", bEnd, a.NetNS, err)
	}
	inJail := r.Name() // the kernel reports the name the interface has in the jail
	jfd, rfd, err := jailSockets(ctx, jid)
	if err != nil {
		return err
	}
	defer unix.Close(jfd)
	defer unix.Close(rfd)
	if err := ifRename(jfd, inJail, a.IfName); err != nil {
		return fmt.Errorf("jail %s: %w", a.NetNS, err)
	}
	if err := ifAddAddr(jfd, a.IfName, a.Address); err != nil {
		return fmt.Errorf("jail %s: %w", a.NetNS, err)
	}
	for _, ifname := range []string{a.IfName, "lo0"} {
		if err := ifUp(jfd, ifname); err != nil {
			return fmt.Errorf("jail %s: %w", a.NetNS, err)
		}
	}
	if err := ifAddAddr(jfd, "lo0", netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		return fmt.Errorf("jail %s: %w", a.NetNS, err)
	}
	_, err = routeCall(rfd, bsdnet.DefaultRoute(bsdnet.RTM_ADD, a.Gateway, 1))
	if errors.Is(err, unix.EEXIST) {
		_, err = routeCall(rfd, bsdnet.DefaultRoute(bsdnet.RTM_CHANGE, a.Gateway, 2))
	}
	if err != nil {
		return fmt.Errorf("jail %s: default route via %v: %w", a.NetNS, a.Gateway, err)
	}
	return nil
}

func (d *bsdDriver) detach(ctx context.Context, n *Network, a *Attachment) error {
	if err := supported(); err != nil {
		return err
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ifDestroy(fd, a.HostIf)
}

func (d *bsdDriver) check(ctx context.Context, n *Network, a *Attachment) error {
	if err := supported(); err != nil {
		return err
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, ifname := range []string{n.Bridge, a.HostIf} {
		ok, err := ifExists(fd, ifname)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("interface %s is missing", ifname)
		}
	}
	if err := bridgeCmd(fd, bsdnet.SIOCGDRVSPEC, n.Bridge, bsdnet.BRDGGIFFLGS, a.HostIf); err != nil {
		return fmt.Errorf("%s is not a member of bridge %s: %w", a.HostIf, n.Bridge, err)
	}
	jid, err := jailID(a.NetNS)
	if err != nil {
		return err
	}
	jfd, rfd, err := jailSockets(ctx, jid)
	if err != nil {
		return err
	}
	defer unix.Close(jfd)
	defer unix.Close(rfd)
	r, err := ifreqCall(jfd, bsdnet.SIOCGIFFLAGS, a.IfName, nil)
	if err != nil {
		return fmt.Errorf("jail %s: interface %s: %w", a.NetNS, a.IfName, err)
	}
	if r.Flags()&bsdnet.IFF_UP == 0 {
		return fmt.Errorf("jail %s: interface %s is down", a.NetNS, a.IfName)
	}
	got, err := ifAddr(jfd, a.IfName)
	if err != nil {
		return fmt.Errorf("jail %s: %w", a.NetNS, err)
	}
	if got != a.Address.Addr() {
		return fmt.Errorf("jail %s: %s has address %v, want %v", a.NetNS, a.IfName, got, a.Address.Addr())
	}
	route, err := routeCall(rfd, bsdnet.DefaultRoute(bsdnet.RTM_GET, netip.Addr{}, 3))
	if err != nil {
		return fmt.Errorf("jail %s: default route: %w", a.NetNS, err)
	}
	if route.Gateway != a.Gateway {
		return fmt.Errorf("jail %s: default route via %v, want %v", a.NetNS, route.Gateway, a.Gateway)
	}
	return nil
}

func (d *bsdDriver) hostRoutes(ctx context.Context) ([]netip.Prefix, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	mib := bsdnet.RouteDumpMIB()
	for range 8 {
		var size uintptr
		if err := sysctlMIB(mib[:], nil, &size); err != nil {
			return nil, fmt.Errorf("routing table: %w", err)
		}
		size += size / 4 // routes added between the two calls
		buf := make([]byte, size)
		if err := sysctlMIB(mib[:], buf, &size); errors.Is(err, unix.ENOMEM) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("routing table: %w", err)
		}
		return bsdnet.ParseRouteDump(buf[:size])
	}
	return nil, errors.New("routing table: keeps growing while read")
}

func sysctlMIB(mib []int32, buf []byte, size *uintptr) error {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	if _, _, e := unix.Syscall6(unix.SYS___SYSCTL, uintptr(unsafe.Pointer(&mib[0])), uintptr(len(mib)),
		uintptr(p), uintptr(unsafe.Pointer(size)), 0, 0); e != 0 {
		return e
	}
	return nil
}

func (d *bsdDriver) hostLinks(ctx context.Context) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("interfaces: %w", err)
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return names, nil
}

// pfCall runs a DIOCR* ioctl on /dev/pf; buf is the array pfrio_buffer points to.
func pfCall(fd int, req uint32, table *bsdnet.PfrTable, buf []byte, esize, size int) (*bsdnet.PfiocTable, error) {
	var addr uint64
	var pin runtime.Pinner
	defer pin.Unpin()
	if len(buf) > 0 {
		pin.Pin(&buf[0])
		addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	io := bsdnet.NewPfiocTable(table, addr, esize, size)
	if err := ioctl(fd, req, unsafe.Pointer(&io[0])); err != nil {
		return nil, err
	}
	return io, nil
}

// anchorTables lists the tables of knast's anchor by name with their flags; ok is false when the anchor
// does not exist.
func (d *bsdDriver) anchorTables(fd int) (tables map[string]uint32, ok bool, err error) {
	filter, err := bsdnet.NewPfrTable(d.anchor, "x", 0)
	if err != nil {
		return nil, false, err
	}
	clear(filter[bsdnet.MAXPATHLEN:]) // a filter names the anchor only
	for range 8 {
		io, err := pfCall(fd, bsdnet.DIOCRGETTABLES, filter, nil, bsdnet.SizeofPfrTable, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("pf anchor %s: list tables: %w", d.anchor, err)
		}
		n := io.Size()
		buf := make([]byte, (n+4)*bsdnet.SizeofPfrTable)
		if io, err = pfCall(fd, bsdnet.DIOCRGETTABLES, filter, buf, bsdnet.SizeofPfrTable, n+4); err != nil {
			return nil, false, fmt.Errorf("pf anchor %s: list tables: %w", d.anchor, err)
		}
		if io.Size() > n+4 {
			continue // tables were added in between: the kernel wrote nothing
		}
		list, err := bsdnet.ParsePfrTables(buf, io.Size())
		if err != nil {
			return nil, false, err
		}
		tables = map[string]uint32{}
		for _, t := range list {
			tables[t.Name()] = t.Flags()
		}
		return tables, true, nil
	}
	return nil, false, fmt.Errorf("pf anchor %s: tables keep changing while listed", d.anchor)
}

// syncNAT fills the tables of knast's pf anchor from the store: the masqueraded subnets and, per
// published slot, its host addresses and container. The rules are the administrator's (bsdnet.PFAnchor):
// a published port whose slot has no rule is an error naming the rule to add. Each table is replaced
// atomically (DIOCRSETADDRS); pf offers no transaction across tables, so a crash between two leaves
// the next syncNAT to finish the job.
func (d *bsdDriver) syncNAT(ctx context.Context, nets []Network, atts []Attachment) error {
	if err := supported(); err != nil {
		return err
	}
	plan := planNAT(nets, atts)
	var pubs []bsdnet.Publish
	for _, r := range plan.dnat {
		pubs = append(pubs, bsdnet.Publish{
			Slot:   bsdnet.Slot{Proto: r.proto, HostPort: r.hostPort, ContainerPort: r.dest.Port()},
			HostIP: r.hostIP, Container: r.dest.Addr(),
		})
	}
	tables, err := bsdnet.PlanTables(plan.masq, pubs)
	if err != nil {
		return err
	}
	needed := len(plan.masq) > 0 || len(pubs) > 0
	howto := fmt.Sprintf("load knast's pf anchor %q (see the README's FreeBSD section)", d.anchor)
	fd, err := unix.Open("/dev/pf", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if !needed {
			return nil
		}
		return fmt.Errorf("open /dev/pf: %w: NAT and published ports need pf (kldload pf) and %s", err, howto)
	}
	defer unix.Close(fd)
	have, ok, err := d.anchorTables(fd)
	if err != nil {
		return err
	}
	if !ok {
		if !needed {
			return nil
		}
		return fmt.Errorf("pf has no anchor %q: %s", d.anchor, howto)
	}
	planned := map[string]bool{}
	for i, t := range tables {
		planned[t.Name] = true
		flags, exists := have[t.Name]
		if len(t.Entries) > 0 && flags&bsdnet.PFR_TFLAG_REFERENCED == 0 {
			if t.Name == bsdnet.NetsTable {
				return fmt.Errorf("pf anchor %q has no nat rule for <%s>: %s", d.anchor, t.Name, howto)
			}
			// Slot tables come in pairs, the listening addresses first.
			slot := pubSlot(pubs, tables[i].Name)
			return fmt.Errorf("published port %v: pf anchor %q has no rule for it; add %q to the anchor and reload it",
				slot, d.anchor, slot.Rule("EXT_IF"))
		}
		if !exists {
			continue // not in the anchor and nothing to hold
		}
		if err := d.fillTable(fd, t, flags); err != nil {
			return err
		}
	}
	for name, flags := range have {
		if bsdnet.Owned(name) && !planned[name] && flags&bsdnet.PFR_TFLAG_ACTIVE != 0 {
			if err := d.fillTable(fd, bsdnet.Table{Name: name}, flags); err != nil {
				return err
			}
		}
	}
	return nil
}

func pubSlot(pubs []bsdnet.Publish, table string) bsdnet.Slot {
	for _, p := range pubs {
		if dst, target := p.Tables(); dst == table || target == table {
			return p.Slot
		}
	}
	return bsdnet.Slot{}
}

// fillTable makes t's table active (a table only rules name is not) and sets its content.
func (d *bsdDriver) fillTable(fd int, t bsdnet.Table, flags uint32) error {
	if flags&bsdnet.PFR_TFLAG_ACTIVE == 0 {
		create, err := bsdnet.NewPfrTable(d.anchor, t.Name, bsdnet.PFR_TFLAG_PERSIST)
		if err != nil {
			return err
		}
		if _, err := pfCall(fd, bsdnet.DIOCRADDTABLES, create, create[:], bsdnet.SizeofPfrTable, 1); err != nil {
			return fmt.Errorf("pf table <%s>: create: %w", t.Name, err)
		}
	}
	table, err := bsdnet.NewPfrTable(d.anchor, t.Name, 0)
	if err != nil {
		return err
	}
	addrs, err := bsdnet.PfrAddrs(t.Entries)
	if err != nil {
		return fmt.Errorf("pf table <%s>: %w", t.Name, err)
	}
	if _, err := pfCall(fd, bsdnet.DIOCRSETADDRS, table, addrs, bsdnet.SizeofPfrAddr, len(t.Entries)); err != nil {
		return fmt.Errorf("pf table <%s>: set %d entries: %w", t.Name, len(t.Entries), err)
	}
	return nil
}
