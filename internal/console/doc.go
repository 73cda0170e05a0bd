// Package console owns the pseudo-terminals of knast: it allocates pty pairs,
// passes a pty master over a unix socket with SCM_RIGHTS (the runc
// --console-socket protocol that containerd, podman and conmon speak), and
// proxies a pty master to the caller's stdio for `knast run -t`.
package console
