package container

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// RunOptions are the flags of `knast run`.
type RunOptions struct {
	CreateOptions
	Detach bool
	// Terminal is set when the config asks for a terminal: without --console-socket knast then owns the
	// pty and proxies it to its own stdio.
	Terminal bool
}

// Run creates and starts a container. Detached, it returns once the container runs. Otherwise it waits,
// forwarding signals, deletes the container and returns the exit status (128+signal for a signal death).
func (m *Manager) Run(ctx context.Context, id string, o RunOptions) (int, error) {
	con, err := newOwnConsole(o.Terminal && o.ConsoleSocket == "", o.Detach)
	if err != nil {
		return -1, err
	}
	defer con.close()
	if con != nil {
		o.ConsoleSocket = con.path()
	}
	var sigc chan os.Signal
	if !o.Detach {
		// Registered before the container exists so no signal sent meanwhile kills knast instead.
		sigc = forwardSignals()
		defer signal.Stop(sigc)
	}
	if err := m.Create(ctx, id, o.CreateOptions); err != nil {
		return -1, err
	}
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return -1, err
	}
	proxyDone := con.proxy(ctx)
	if err := m.Start(ctx, id); err != nil {
		m.Delete(context.Background(), id, true)
		return -1, err
	}
	if o.Detach {
		return 0, nil
	}
	status, err := waitChild(rec.Pid, sigc)
	<-proxyDone
	if derr := m.Delete(context.Background(), id, true); derr != nil && err == nil {
		err = derr
	}
	return status, err
}

// waitChild waits for pid, which is our child (Spawn made us a subreaper), relaying sigc to it.
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
			return -1, fmt.Errorf("wait for process %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}
