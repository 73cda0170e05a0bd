package bsdnet

import "testing"

// TestIoctlNumbers checks each request three ways: the constant, the _IOW/_IOWR encoding of the macro as
// the header writes it, and the value a C compiler gives on FreeBSD amd64/arm64 (both LP64, so the
// same). Line numbers are those of the FreeBSD 14/15 headers.
func TestIoctlNumbers(t *testing.T) {
	tests := []struct {
		name  string
		got   uint32
		macro uint32
		want  uint32
		cite  string
	}{
		{"SIOCSIFFLAGS", SIOCSIFFLAGS, IOW('i', 16, SizeofIfreq), 0x80206910, "sys/sys/sockio.h:57 _IOW('i', 16, struct ifreq)"},
		{"SIOCGIFFLAGS", SIOCGIFFLAGS, IOWR('i', 17, SizeofIfreq), 0xc0206911, "sys/sys/sockio.h:58 _IOWR('i', 17, struct ifreq)"},
		{"SIOCGIFADDR", SIOCGIFADDR, IOWR('i', 33, SizeofIfreq), 0xc0206921, "sys/sys/sockio.h:53 _IOWR('i', 33, struct ifreq)"},
		{"SIOCSIFNAME", SIOCSIFNAME, IOW('i', 40, SizeofIfreq), 0x80206928, "sys/sys/sockio.h:79 _IOW('i', 40, struct ifreq)"},
		// x/sys/unix's SIOCAIFADDR (0x8040691a) is OSIOCAIFADDR, the FreeBSD 9 struct oifaliasreq.
		{"SIOCAIFADDR", SIOCAIFADDR, IOW('i', 43, SizeofInAliasreq), 0x8044692b, "sys/sys/sockio.h:82 _IOW('i', 43, struct ifaliasreq)"},
		{"SIOCGIFMTU", SIOCGIFMTU, IOWR('i', 51, SizeofIfreq), 0xc0206933, "sys/sys/sockio.h:88 _IOWR('i', 51, struct ifreq)"},
		{"SIOCSIFMTU", SIOCSIFMTU, IOW('i', 52, SizeofIfreq), 0x80206934, "sys/sys/sockio.h:89 _IOW('i', 52, struct ifreq)"},
		{"SIOCSIFLLADDR", SIOCSIFLLADDR, IOW('i', 60, SizeofIfreq), 0x8020693c, "sys/sys/sockio.h:99 _IOW('i', 60, struct ifreq)"},
		{"SIOCSIFVNET", SIOCSIFVNET, IOWR('i', 90, SizeofIfreq), 0xc020695a, "sys/sys/sockio.h:113 _IOWR('i', 90, struct ifreq)"},
		{"SIOCIFDESTROY", SIOCIFDESTROY, IOW('i', 121, SizeofIfreq), 0x80206979, "sys/sys/sockio.h:129 _IOW('i', 121, struct ifreq)"},
		{"SIOCSDRVSPEC", SIOCSDRVSPEC, IOW('i', 123, SizeofIfdrv), 0x8028697b, "sys/sys/sockio.h:122 _IOW('i', 123, struct ifdrv)"},
		{"SIOCGDRVSPEC", SIOCGDRVSPEC, IOWR('i', 123, SizeofIfdrv), 0xc028697b, "sys/sys/sockio.h:124 _IOWR('i', 123, struct ifdrv)"},
		{"SIOCIFCREATE2", SIOCIFCREATE2, IOWR('i', 124, SizeofIfreq), 0xc020697c, "sys/sys/sockio.h:128 _IOWR('i', 124, struct ifreq)"},
		{"DIOCRADDTABLES", DIOCRADDTABLES, IOWR('D', 61, SizeofPfiocTable), 0xc450443d, "net/pfvar.h DIOCRADDTABLES _IOWR('D', 61, struct pfioc_table)"},
		{"DIOCRGETTABLES", DIOCRGETTABLES, IOWR('D', 63, SizeofPfiocTable), 0xc450443f, "net/pfvar.h DIOCRGETTABLES _IOWR('D', 63, struct pfioc_table)"},
		{"DIOCRCLRADDRS", DIOCRCLRADDRS, IOWR('D', 66, SizeofPfiocTable), 0xc4504442, "net/pfvar.h DIOCRCLRADDRS _IOWR('D', 66, struct pfioc_table)"},
		{"DIOCRADDADDRS", DIOCRADDADDRS, IOWR('D', 67, SizeofPfiocTable), 0xc4504443, "net/pfvar.h DIOCRADDADDRS _IOWR('D', 67, struct pfioc_table)"},
		{"DIOCRDELADDRS", DIOCRDELADDRS, IOWR('D', 68, SizeofPfiocTable), 0xc4504444, "net/pfvar.h DIOCRDELADDRS _IOWR('D', 68, struct pfioc_table)"},
		{"DIOCRSETADDRS", DIOCRSETADDRS, IOWR('D', 69, SizeofPfiocTable), 0xc4504445, "net/pfvar.h DIOCRSETADDRS _IOWR('D', 69, struct pfioc_table)"},
		{"DIOCRGETADDRS", DIOCRGETADDRS, IOWR('D', 70, SizeofPfiocTable), 0xc4504446, "net/pfvar.h DIOCRGETADDRS _IOWR('D', 70, struct pfioc_table)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want || tt.macro != tt.want {
				t.Errorf("%s = %#x, encoded %#x, want %#x (%s)", tt.name, tt.got, tt.macro, tt.want, tt.cite)
			}
		})
	}
}

// TestIOC checks the encoding against sys/sys/ioccom.h:59-66 (_IOC, _IO, _IOR, _IOW, _IOWR) and its
// direction bits (lines 53-56).
func TestIOC(t *testing.T) {
	tests := []struct {
		name string
		got  uint32
		want uint32
	}{
		{"_IO('D', 1) DIOCSTART", IO('D', 1), 0x20004401},
		{"_IOR('s', 1, int) SIOCGHIWAT", IOR('s', 1, 4), 0x40047301},
		{"_IOW('s', 0, int) SIOCSHIWAT", IOW('s', 0, 4), 0x80047300},
		{"_IOWR size masked to 13 bits", IOWR('x', 1, 1<<13+5), 0xc0057801},
		{"IOC_INOUT", IOCInOut, 0xc0000000},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

// TestSizes pins the struct sizes the ioctl numbers encode and that the kernel compares lengths with
// (ifd_len against the bridge command's argument size, pfrio_esize against sizeof(struct pfr_addr)).
func TestSizes(t *testing.T) {
	tests := []struct {
		name      string
		got, want int
		why       string
	}{
		{"ifreq", SizeofIfreq, IFNAMSIZ + 16, "net/if.h: char[16] + union aligned to 8 whose largest member, struct ifreq_buffer, is 16"},
		{"in_aliasreq", SizeofInAliasreq, IFNAMSIZ + 3*SizeofSockaddrIn + 4, "name, addr, broadaddr, mask, int vhid"},
		{"ifdrv", SizeofIfdrv, IFNAMSIZ + 3*8, "name, u_long cmd, size_t len, void *data"},
		{"ifbreq", SizeofIfbreq, IFNAMSIZ + 3*4 + 5 + 3 + 3*4 + 2 + 2 + 28, "if_bridgevar.h 15.0 (pvid, vlanproto, pad[28]); 14.x pad[32]: both 80"},
		{"rt_metrics", SizeofRtMetrics, 14 * 8, "net/route.h: 12 u_long + u_long filler[2]"},
		{"rt_msghdr", SizeofRtMsghdr, 2 + 1 + 1 + 2 + 2 + 6*4 + 8 + SizeofRtMetrics, "net/route.h; x/sys/unix SizeofRtMsghdr 0x98"},
		{"pfr_table", SizeofPfrTable, (MAXPATHLEN + PFTableNameSize + 4 + 1 + 3) &^ 3, "anchor[1024], name[32], u_int32 flags, u_int8 fback, padded to 4"},
		{"pfr_addr", SizeofPfrAddr, 16 + 4, "union in_addr/in6_addr, af, net, not, fback"},
		{"pfioc_table", SizeofPfiocTable, SizeofPfrTable + 8 + 7*4 + 4, "pfr_table, void *buffer (1064 is 8-aligned), 7 int, u_int32 ticket"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("sizeof(struct %s) = %d, want %d (%s)", tt.name, tt.got, tt.want, tt.why)
		}
	}
	if SizeofPfiocTable%8 != 0 || pfrioTicket != SizeofPfiocTable-4 {
		t.Errorf("pfioc_table: ticket at %d of %d", pfrioTicket, SizeofPfiocTable)
	}
}
