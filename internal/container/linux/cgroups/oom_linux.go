package cgroups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// OOMEvents reports each OOM of the cgroup until ctx ends or the cgroup is removed, then closes
// the channel. v1: an eventfd registered for memory.oom_control through cgroup.event_control;
// cgroup2: inotify on memory.events, reporting when oom_kill grows.
func (c *Cgroup) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	if d := c.v1DirFor("memory"); d != "" {
		return oomV1(ctx, d)
	}
	if c.v2 != "" && c.layout.onV2("memory") {
		return oomV2(ctx, c.v2)
	}
	return nil, errors.New("oom events: the memory controller is not available")
}

func oomV1(ctx context.Context, dir string) (<-chan struct{}, error) {
	ctl := filepath.Join(dir, "memory.oom_control")
	oomFd, err := unix.Open(ctl, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fileError{field: "oom events", path: ctl, err: err}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(oomFd)
		return nil, fmt.Errorf("oom events: eventfd: %w", err)
	}
	ev := filepath.Join(dir, "cgroup.event_control")
	if err := writeFile(ev, strconv.Itoa(efd)+" "+strconv.Itoa(oomFd)); err != nil {
		unix.Close(oomFd)
		unix.Close(efd)
		return nil, &fileError{field: "oom events", path: ev, err: err}
	}
	f := os.NewFile(uintptr(efd), "oom eventfd") // non-blocking: Close wakes a pending Read
	ch := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer unix.Close(oomFd)
		defer f.Close()
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			// The eventfd also fires when the cgroup is removed.
			if _, err := os.Stat(ev); err != nil {
				return
			}
			for range binary.LittleEndian.Uint64(buf) {
				select {
				case ch <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func oomKills(path string) (uint64, error) {
	s, err := readFile(path)
	if err != nil {
		return 0, err
	}
	kv, err := parseKeyValues(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return kv["oom_kill"], nil
}

func oomV2(ctx context.Context, dir string) (<-chan struct{}, error) {
	p := filepath.Join(dir, "memory.events")
	last, err := oomKills(p)
	if err != nil {
		return nil, &fileError{field: "oom events", path: p, err: err}
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("oom events: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(ifd, p, unix.IN_MODIFY); err != nil {
		unix.Close(ifd)
		return nil, &fileError{field: "oom events: inotify", path: p, err: err}
	}
	f := os.NewFile(uintptr(ifd), "oom inotify")
	ch := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer f.Close()
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				nameLen := binary.NativeEndian.Uint32(buf[off+12:])
				if mask&unix.IN_IGNORED != 0 {
					return // the cgroup was removed
				}
				off += unix.SizeofInotifyEvent + int(nameLen)
			}
			cur, err := oomKills(p)
			if err != nil {
				return
			}
			for ; last < cur; last++ {
				select {
				case ch <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}
