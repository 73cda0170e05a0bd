package freebsd

import "fmt"

// rlimits are FreeBSD's RLIMIT_* resource numbers, <sys/resource.h>. RLIMIT_AS is RLIMIT_VMEM there.
var rlimits = map[string]int{
	"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
	"RLIMIT_RSS": 5, "RLIMIT_MEMLOCK": 6, "RLIMIT_NPROC": 7, "RLIMIT_NOFILE": 8, "RLIMIT_SBSIZE": 9,
	"RLIMIT_VMEM": 10, "RLIMIT_AS": 10, "RLIMIT_NPTS": 11, "RLIMIT_SWAP": 12, "RLIMIT_KQUEUES": 13,
	"RLIMIT_UMTXP": 14, "RLIMIT_PIPEBUF": 15,
}

// Rlimit is the FreeBSD resource number of a process.rlimits type.
func Rlimit(name string) (int, error) {
	if r, ok := rlimits[name]; ok {
		return r, nil
	}
	return 0, fmt.Errorf("process.rlimits: %s does not exist on FreeBSD", name)
}
