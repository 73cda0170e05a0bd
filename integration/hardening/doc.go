// Package hardening attacks the built knast binary (Linux, as root): SIGKILLs at random points of
// create, start, delete, run -d and pull, 8 concurrent clients on shared container IDs, hostile
// images and configs aimed at a host canary directory, and escapes tried from inside a running
// container. Every test checks with testutil's leak snapshot that it left no mount, process,
// cgroup, state entry or broken store behind. TestMain prints a summary: fuzz executions (from
// hardening/fuzz.sh), crashes injected, operations under load, hostile inputs and the tally.
//
// Other suites adopt the leak checker the same way: take a testutil.Snapshot of a Scope before the
// test and compare after it,
//
//	scope := testutil.Scope{
//		Root:    root,                                       // the test's --root: state entries
//		Paths:   []string{testDir},                          // mounts at or under these
//		Token:   token,                                      // processes with it in env or cmdline
//		Cgroups: []string{testutil.KnastCgroupParent(root)}, // the root's container cgroups
//		LinkPrefixes: []string{"kt"},                        // the test's veths and bridges
//		NftTables:    []string{"knast-test"},                // the test's nft tables
//	}
//	before, _ := testutil.TakeSnapshot(scope)
//	t.Cleanup(func() { if l := before.WaitLeaks(5 * time.Second); len(l) > 0 { t.Errorf("leaked: %v", l) } })
//
// The root's parent cgroup outlives its last container by design; remove it (rmdir, which fails
// while containers remain) before the comparison, as env.leaks does here.
package hardening
