package cgroups

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// deviceFilter assembles a BPF_PROG_TYPE_CGROUP_DEVICE program with runc's semantics: the rules
// are replayed as the v1 controller would (emulateDevices); the program then checks each
// exception in turn (type, requested access a subset of the rule's, major, minor; -1 matches
// any) and returns its action, else the default.
func deviceFilter(rules []devRule) asm.Instructions {
	defaultAllow, ex := emulateDevices(rules)
	// struct bpf_cgroup_dev_ctx { u32 access_type (type | access<<16); u32 major; u32 minor; }
	insts := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.And.Imm32(asm.R2, 0xFFFF),
		asm.LoadMem(asm.R3, asm.R1, 0, asm.Word),
		asm.RSh.Imm32(asm.R3, 16),
		asm.LoadMem(asm.R4, asm.R1, 4, asm.Word),
		asm.LoadMem(asm.R5, asm.R1, 8, asm.Word),
	}
	ret := func(allow bool) int32 {
		if allow {
			return 1
		}
		return 0
	}
	for i, r := range ex {
		next := "block-" + strconv.Itoa(i+1)
		typ := int32(unix.BPF_DEVCG_DEV_CHAR)
		if r.typ == 'b' {
			typ = unix.BPF_DEVCG_DEV_BLOCK
		}
		var acc int32
		for _, c := range r.access {
			switch c {
			case 'r':
				acc |= unix.BPF_DEVCG_ACC_READ
			case 'w':
				acc |= unix.BPF_DEVCG_ACC_WRITE
			case 'm':
				acc |= unix.BPF_DEVCG_ACC_MKNOD
			}
		}
		block := asm.Instructions{asm.JNE.Imm(asm.R2, typ, next)}
		if acc != unix.BPF_DEVCG_ACC_READ|unix.BPF_DEVCG_ACC_WRITE|unix.BPF_DEVCG_ACC_MKNOD {
			block = append(block,
				asm.Mov.Reg32(asm.R1, asm.R3),
				asm.And.Imm32(asm.R1, acc),
				asm.JNE.Reg(asm.R1, asm.R3, next))
		}
		if r.major >= 0 {
			block = append(block, asm.JNE.Imm(asm.R4, int32(uint32(r.major)), next))
		}
		if r.minor >= 0 {
			block = append(block, asm.JNE.Imm(asm.R5, int32(uint32(r.minor)), next))
		}
		block = append(block, asm.Mov.Imm32(asm.R0, ret(r.allow)), asm.Return())
		block[0] = block[0].WithSymbol("block-" + strconv.Itoa(i))
		insts = append(insts, block...)
	}
	insts = append(insts,
		asm.Mov.Imm32(asm.R0, ret(defaultAllow)).WithSymbol("block-"+strconv.Itoa(len(ex))),
		asm.Return())
	return insts
}

// attachDeviceFilter loads insts and attaches them to the cgroup2 directory fd, then detaches the
// programs that were attached before, so a later call replaces the filter without a window
// where no filter applies.
func attachDeviceFilter(dirFd int, insts asm.Instructions) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupDevice,
		Instructions: insts,
		License:      "Apache",
	})
	if err != nil {
		return fmt.Errorf("load device filter: %w", err)
	}
	defer prog.Close()
	old, err := link.QueryPrograms(link.QueryOptions{Target: dirFd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return fmt.Errorf("query attached device filters: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: dirFd, Program: prog, Attach: ebpf.AttachCGroupDevice, Flags: unix.BPF_F_ALLOW_MULTI,
	}); err != nil {
		return fmt.Errorf("attach device filter: %w", err)
	}
	var errs []error
	for _, p := range old.Programs {
		op, err := ebpf.NewProgramFromID(p.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("open old device filter %d: %w", p.ID, err))
			continue
		}
		err = link.RawDetachProgram(link.RawDetachProgramOptions{Target: dirFd, Program: op, Attach: ebpf.AttachCGroupDevice})
		op.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("detach old device filter %d: %w", p.ID, err))
		}
	}
	return errors.Join(errs...)
}
