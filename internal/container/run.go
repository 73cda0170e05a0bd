package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/console"
)

// RunOptions are the flags of `knast run`.
type RunOptions struct {
	CreateOptions
	Detach bool
	// Terminal is set when the config asks for a terminal and no --console-socket was given: knast then
	// owns the pty and proxies it to its own stdio.
	Terminal bool
}

// Run creates and starts a container. Detached, it returns once the container runs. Otherwise it waits,
// forwarding signals, deletes the container and returns the exit status (128+signal for a signal death).
func (m *Manager) Run(ctx context.Context, id string, o RunOptions) (int, error) {
	var sock *console.Socket
	if o.Terminal && o.ConsoleSocket == "" {
		if o.Detach {
			return -1, errors.New("process.terminal with --detach needs --console-socket")
		}
		dir, err := os.MkdirTemp("", "knast-console-")
		if err != nil {
			return -1, err
		}
		defer os.RemoveAll(dir)
		sock, err = console.NewSocket(filepath.Join(dir, "console.sock"))
		if err != nil {
			return -1, err
		}
		defer sock.Close()
		o.ConsoleSocket = sock.Path()
	}
	type masterResult struct {
		f   *os.File
		err error
	}
	masterc := make(chan masterResult, 1)
	if sock != nil {
		go func() {
			f, err := sock.ReceiveMaster(ctx)
			masterc <- masterResult{f, err}
		}()
	}
	if err := m.Create(ctx, id, o.CreateOptions); err != nil {
		return -1, err
	}
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return -1, err
	}
	var proxyDone chan error
	if sock != nil {
		r := <-masterc
		if r.err != nil {
			m.Delete(context.Background(), id, true)
			return -1, r.err
		}
		defer r.f.Close()
		proxyDone = make(chan error, 1)
		go func() { proxyDone <- console.Proxy(ctx, r.f, os.Stdin, os.Stdout) }()
	}
	// Forward the signals a user sends to `knast run` to the container, as runc does.
	sigc := make(chan os.Signal, 16)
	if !o.Detach {
		signal.Notify(sigc, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
		defer signal.Stop(sigc)
	}
	if err := m.Start(ctx, id); err != nil {
		m.Delete(context.Background(), id, true)
		return -1, err
	}
	if o.Detach {
		return 0, nil
	}
	status, err := waitChild(rec.Pid, sigc)
	if proxyDone != nil {
		<-proxyDone
	}
	if derr := m.Delete(context.Background(), id, true); derr != nil && err == nil {
		err = derr
	}
	return status, err
}

// waitChild waits for the container's init, which is our child: Spawn made us a subreaper.
func waitChild(pid int, sigc chan os.Signal) (int, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigc:
				if s != unix.SIGWINCH { // the console proxy resizes the pty itself
					unix.Kill(pid, s.(unix.Signal))
				}
			case <-done:
				return
			}
		}
	}()
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait for container init %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}
