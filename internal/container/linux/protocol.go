package linux

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/container/linux/seccomp"
)

// InitConfig is everything the container's init needs, sent by the parent as the first message on the
// sync socket once the nsenter phase is over. The init never reads the bundle itself: the parent has
// validated the config and this is the single source of truth. It is encoded as initWire (initwire.go),
// which leaves out the parts of the spec that only the parent uses.
type InitConfig struct {
	ID           string
	Spec         *specs.Spec
	Rootfs       string // absolute host path
	FifoFd       int    // O_PATH fd of the exec fifo in the child: the init may lack access to the state dir
	NoPivot      bool
	NoNewKeyring bool
	PreserveFds  int
	ConsoleFd    int // fd of the connected console socket in the child, or -1
	UserNS       bool
	// IDMapFds are the fds, in the init, of the ID-mapped bind mounts the parent made for a container
	// with a user namespace (IDMapTrees), by index in Spec.Mounts.
	IDMapFds map[int]int
	State    specs.State // for the createContainer and startContainer hooks
	// Seccomp is linux.seccomp compiled by the parent, so the init needs no libseccomp.
	Seccomp *seccomp.Filter
	// Exec is set for `knast exec`: the init joins a running container and execs Spec.Process at once,
	// with no rootfs setup and no fifo.
	Exec bool
}

// Message types of the init protocol, one JSON object per line on the sync socket.
const (
	MsgConfig    = "config"     // parent → init: Config
	MsgHooks     = "hooks"      // init → parent: run prestart and createRuntime hooks now
	MsgHooksDone = "hooks-done" // parent → init
	MsgReady     = "ready"      // init → parent: the container is created, init waits on the fifo
	MsgError     = "error"      // init → parent: Error, then the init exits
	// MsgSeccomp (init → parent) names the seccomp notify fd in the init's fd table; the parent copies it
	// with pidfd_getfd, sends it to linux.seccomp.listenerPath and answers MsgSeccompDone.
	MsgSeccomp     = "seccomp"
	MsgSeccompDone = "seccomp-done"
)

// Message is one line of the init protocol.
type Message struct {
	Type   string      `json:"type"`
	Config *InitConfig `json:"config,omitempty"`
	Error  string      `json:"error,omitempty"`
	Fd     int         `json:"fd,omitempty"`
}

// Conn speaks the init protocol on one end of the sync socket.
type Conn struct {
	r *bufio.Reader
	w io.Writer
}

// NewConn wraps rw; reads are buffered, so one Conn per socket end.
func NewConn(rw io.ReadWriter) *Conn { return &Conn{r: bufio.NewReader(rw), w: rw} }

// Send writes one message.
func (c *Conn) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s message: %w", m.Type, err)
	}
	return nil
}

// Recv reads one message. An init error message is returned as an error.
func (c *Conn) Recv() (Message, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if err == io.EOF {
			return Message{}, io.ErrUnexpectedEOF
		}
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return Message{}, fmt.Errorf("decode init message %q: %w", line, err)
	}
	return m, nil
}

// Expect reads one message and checks its type; an error message from the other side becomes the error.
func (c *Conn) Expect(typ string) (Message, error) {
	m, err := c.Recv()
	if err != nil {
		return m, err
	}
	if m.Type == MsgError {
		return m, &InitError{Msg: m.Error}
	}
	if m.Type != typ {
		return m, fmt.Errorf("init protocol: got %q, want %q", m.Type, typ)
	}
	return m, nil
}

// InitError is an error reported by the container's init process.
type InitError struct{ Msg string }

func (e *InitError) Error() string { return e.Msg }
