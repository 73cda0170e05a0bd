// Package seccomp turns the runtime-spec `linux.seccomp` profile into a BPF filter and installs it.
//
// Prepare compiles the whole profile with libseccomp (defaultAction and defaultErrnoRet, architectures,
// flags, syscalls with every action and argument operator) and keeps only the resulting BPF program, so
// Load is a plain seccomp(2) call: that lets knast pass flags libseccomp may not know yet
// (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV) and lets the init install the filter at the last moment before
// execve without calling into C. Syscall names this libseccomp does not know are skipped, as runc does, so
// one profile serves older and newer hosts.
//
// With SCMP_ACT_NOTIFY the filter is loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER; Load returns the
// listener fd and SendNotifyFd hands it to the profile's listenerPath together with the container process
// state (runtime-spec "Container Process State").
//
// The libseccomp part needs cgo on Linux; elsewhere Prepare and Load return errors.ErrUnsupported.
package seccomp
