package bsdnet

// ioctl request encoding (sys/sys/ioccom.h): the direction in the top 3 bits, the parameter length in
// the 13 bits above bit 16, the group letter and the command number in the low 16 bits.
const (
	IOCParmShift = 13
	IOCParmMask  = 1<<IOCParmShift - 1
	IOCVoid      = 0x20000000
	IOCOut       = 0x40000000
	IOCIn        = 0x80000000
	IOCInOut     = IOCIn | IOCOut
)

// IOC is _IOC(inout, group, num, len).
func IOC(inout uint32, group byte, num byte, size int) uint32 {
	return inout | uint32(size&IOCParmMask)<<16 | uint32(group)<<8 | uint32(num)
}

// IO is _IO(g, n): no parameter.
func IO(group, num byte) uint32 { return IOC(IOCVoid, group, num, 0) }

// IOR is _IOR(g, n, t): the kernel copies sizeof(t) bytes out.
func IOR(group, num byte, size int) uint32 { return IOC(IOCOut, group, num, size) }

// IOW is _IOW(g, n, t): the kernel copies sizeof(t) bytes in.
func IOW(group, num byte, size int) uint32 { return IOC(IOCIn, group, num, size) }

// IOWR is _IOWR(g, n, t): in and out.
func IOWR(group, num byte, size int) uint32 { return IOC(IOCInOut, group, num, size) }

// Sizes of the kernel structures, from the headers named beside each.
const (
	IFNAMSIZ          = 16   // net/if.h
	SizeofSockaddr    = 16   // sys/sys/socket.h struct sockaddr
	SizeofSockaddrIn  = 16   // netinet/in.h struct sockaddr_in
	SizeofIfreq       = 32   // net/if.h struct ifreq: name + 16-byte union (struct ifreq_buffer, 8-aligned)
	SizeofInAliasreq  = 68   // net/if.h struct ifaliasreq / netinet/in_var.h struct in_aliasreq
	SizeofIfdrv       = 40   // net/if.h struct ifdrv
	SizeofIfbreq      = 80   // net/if_bridgevar.h struct ifbreq
	SizeofRtMetrics   = 112  // net/route.h struct rt_metrics: 14 u_long
	SizeofRtMsghdr    = 152  // net/route.h struct rt_msghdr
	MAXPATHLEN        = 1024 // sys/sys/param.h
	PFTableNameSize   = 32   // netpfil/pf/pf.h PF_TABLE_NAME_SIZE
	SizeofPfrTable    = 1064 // net/pfvar.h struct pfr_table: anchor, name, u_int32 flags, u_int8 fback, padded to 4
	SizeofPfrAddr     = 20   // net/pfvar.h struct pfr_addr: 16-byte union + 4 bytes
	SizeofPfiocTable  = 1104 // net/pfvar.h struct pfioc_table
	sizeofLong        = 8
	sockaddrInAddrOff = 4 // sin_addr inside struct sockaddr_in
)

// Interface ioctls (sys/sys/sockio.h), issued on an AF_INET datagram socket.
const (
	SIOCSIFFLAGS  = IOCIn | SizeofIfreq<<16 | 'i'<<8 | 16
	SIOCGIFFLAGS  = IOCInOut | SizeofIfreq<<16 | 'i'<<8 | 17
	SIOCGIFADDR   = IOCInOut | SizeofIfreq<<16 | 'i'<<8 | 33
	SIOCSIFNAME   = IOCIn | SizeofIfreq<<16 | 'i'<<8 | 40
	SIOCAIFADDR   = IOCIn | SizeofInAliasreq<<16 | 'i'<<8 | 43
	SIOCGIFMTU    = IOCInOut | SizeofIfreq<<16 | 'i'<<8 | 51
	SIOCSIFMTU    = IOCIn | SizeofIfreq<<16 | 'i'<<8 | 52
	SIOCSIFLLADDR = IOCIn | SizeofIfreq<<16 | 'i'<<8 | 60
	SIOCSIFVNET   = IOCInOut | SizeofIfreq<<16 | 'i'<<8 | 90
	SIOCIFDESTROY = IOCIn | SizeofIfreq<<16 | 'i'<<8 | 121
	SIOCSDRVSPEC  = IOCIn | SizeofIfdrv<<16 | 'i'<<8 | 123
	SIOCGDRVSPEC  = IOCInOut | SizeofIfdrv<<16 | 'i'<<8 | 123
	SIOCIFCREATE2 = IOCInOut | SizeofIfreq<<16 | 'i'<<8 | 124
)

// pf table ioctls (net/pfvar.h), issued on /dev/pf.
const (
	DIOCRADDTABLES = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 61
	DIOCRGETTABLES = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 63
	DIOCRCLRADDRS  = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 66
	DIOCRADDADDRS  = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 67
	DIOCRDELADDRS  = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 68
	DIOCRSETADDRS  = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 69
	DIOCRGETADDRS  = IOCInOut | SizeofPfiocTable<<16 | 'D'<<8 | 70
)
