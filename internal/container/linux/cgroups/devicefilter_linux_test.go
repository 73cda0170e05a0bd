package cgroups

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf/asm"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// runFilter interprets the few instructions deviceFilter emits, so its decisions can be checked
// without a kernel.
func runFilter(t *testing.T, insts asm.Instructions, typ, access, major, minor uint32) bool {
	t.Helper()
	labels := map[string]int{}
	for i, ins := range insts {
		if s := ins.Symbol(); s != "" {
			labels[s] = i
		}
	}
	ctx := [3]uint32{typ | access<<16, major, minor}
	var reg [11]uint64
	for pc, steps := 0, 0; pc < len(insts) && steps < 1000; steps++ {
		ins := insts[pc]
		op := ins.OpCode
		src := uint64(ins.Constant)
		if op.Source() == asm.RegSource {
			src = reg[ins.Src]
		}
		switch {
		case op.Class() == asm.LdXClass:
			reg[ins.Dst] = uint64(ctx[ins.Offset/4])
			pc++
		case op.Class().IsALU():
			switch op.ALUOp() {
			case asm.And:
				reg[ins.Dst] &= src
			case asm.RSh:
				reg[ins.Dst] >>= src
			case asm.Mov:
				reg[ins.Dst] = src
			default:
				t.Fatalf("unexpected ALU op %v", ins)
			}
			reg[ins.Dst] &= 0xffffffff
			pc++
		case op.Class().IsJump():
			switch op.JumpOp() {
			case asm.Exit:
				return reg[0] == 1
			case asm.JNE:
				if reg[ins.Dst] != src {
					next, ok := labels[ins.Reference()]
					if !ok {
						t.Fatalf("jump to unknown label %q", ins.Reference())
					}
					pc = next
				} else {
					pc++
				}
			default:
				t.Fatalf("unexpected jump %v", ins)
			}
		default:
			t.Fatalf("unexpected instruction %v", ins)
		}
	}
	t.Fatal("program did not exit")
	return false
}

func TestDeviceFilter(t *testing.T) {
	const (
		c = unix.BPF_DEVCG_DEV_CHAR
		b = unix.BPF_DEVCG_DEV_BLOCK
		r = unix.BPF_DEVCG_ACC_READ
		w = unix.BPF_DEVCG_ACC_WRITE
		m = unix.BPF_DEVCG_ACC_MKNOD
	)
	withDefaults := append([]specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "b", Major: ptr[int64](8), Minor: ptr[int64](0), Access: "r"},
	}, DefaultDevices()...)
	allowAllButOne := []specs.LinuxDeviceCgroup{{Allow: true}, {Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](1), Access: "rw"}}
	tests := []struct {
		rules                  []specs.LinuxDeviceCgroup
		typ, acc, major, minor uint32
		want                   bool
	}{
		{withDefaults, c, r | w, 1, 3, true},    // /dev/null
		{withDefaults, c, r, 1, 1, false},       // /dev/mem
		{withDefaults, c, m, 1, 1, true},        // mknod any char device
		{withDefaults, b, m, 259, 7, true},      // mknod any block device
		{withDefaults, b, r, 8, 0, true},        // read sda
		{withDefaults, b, w, 8, 0, false},       // but not write
		{withDefaults, b, r, 8, 1, false},       // nor another minor
		{withDefaults, c, r | w, 136, 42, true}, // any pty slave
		{withDefaults, c, r | w, 137, 0, false},
		{allowAllButOne, c, r, 1, 1, false},
		{allowAllButOne, c, m, 1, 1, true}, // only rw denied
		{allowAllButOne, b, r | w, 8, 0, true},
		{nil, c, r, 1, 3, false},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			insts := deviceFilter(rules(t, tc.rules...))
			if got := runFilter(t, insts, uint32(tc.typ), uint32(tc.acc), tc.major, tc.minor); got != tc.want {
				t.Errorf("type %d access %d %d:%d: allowed=%v, want %v\n%v", tc.typ, tc.acc, tc.major, tc.minor, got, tc.want, insts)
			}
		})
	}
}
