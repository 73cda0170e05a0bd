// Package cgroups places one container in the host's control groups and applies the OCI
// linux.resources to them. It works on every host layout: pure cgroup v1, hybrid (v1 controllers
// plus a cgroup2 hierarchy, possibly holding some controllers such as hugetlb) and pure cgroup v2.
// The layout is detected at run time from /proc/self/mountinfo and /proc/self/cgroup, never assumed.
//
// Every value conversion and the choice of file for each resource live in pure functions
// (v1Files, v2Files, sharesToWeight, ...); the Linux I/O layer only creates directories and writes
// what they decide. Each resource goes to the hierarchy that holds its controller: a v1 mount when
// the controller is mounted there, else the cgroup2 hierarchy when it lists the controller.
package cgroups
