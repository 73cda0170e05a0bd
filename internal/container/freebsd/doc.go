// Package freebsd is knast's FreeBSD container backend below the lifecycle: jails made with jail_set(2),
// filesystems mounted with nmount(2), devices exposed through devfs rules, resource limits through rctl(8)'s
// kernel interface, and the re-exec'd init that attaches itself to the jail.
//
// Every decision and every byte layout (jail parameter lists, nmount option lists, devfs rule structs,
// ioctl numbers, rctl rule strings, kinfo_proc records) is plain Go, table-tested on any OS. Only the
// files named *_freebsd.go make system calls; no userland tool (jail, jexec, mount, devfs, rctl) is run.
package freebsd
