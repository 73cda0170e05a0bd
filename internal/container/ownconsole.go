package container

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/console"
)

// ownConsole is the pty knast keeps for itself when a process wants a terminal and no --console-socket
// receives it: the master is proxied to knast's own stdio.
type ownConsole struct {
	dir     string
	sock    *console.Socket
	masterc chan masterResult
}

type masterResult struct {
	f   *os.File
	err error
}

// newOwnConsole returns nil when knast need not own the console.
func newOwnConsole(need, detach bool) (*ownConsole, error) {
	if !need {
		return nil, nil
	}
	if detach {
		return nil, errors.New("process.terminal with --detach needs --console-socket")
	}
	dir, err := os.MkdirTemp("", "knast-console-")
	if err != nil {
		return nil, err
	}
	sock, err := console.NewSocket(filepath.Join(dir, "console.sock"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &ownConsole{dir: dir, sock: sock, masterc: make(chan masterResult, 1)}
	go func() {
		f, err := sock.ReceiveMaster(context.Background())
		c.masterc <- masterResult{f, err}
	}()
	return c, nil
}

func (c *ownConsole) path() string { return c.sock.Path() }

// proxy copies between the received pty master and knast's stdio; the channel closes when the container's
// side of the pty is closed.
func (c *ownConsole) proxy(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	if c == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		r := <-c.masterc
		if r.err != nil {
			done <- r.err
			return
		}
		defer r.f.Close()
		done <- console.Proxy(ctx, r.f, os.Stdin, os.Stdout)
	}()
	return done
}

func (c *ownConsole) close() {
	if c == nil {
		return
	}
	c.sock.Close()
	os.RemoveAll(c.dir)
}

// forwardSignals relays the signals a user sends to a foreground knast to the container's process.
func forwardSignals() chan os.Signal {
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	return sigc
}
