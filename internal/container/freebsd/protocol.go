package freebsd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Environment of the re-exec'd `knast init`: the jail to attach to first, and the sync socket's fd.
const (
	EnvJail = "_KNAST_JAIL"
	EnvSync = "_KNAST_JAIL_SYNC"
)

// InitConfig is what the parent sends the init once it is in the jail. The jail, its mounts, devices and
// limits exist already; the init only sets up the process.
type InitConfig struct {
	ID          string         `json:"id"`
	Process     *specs.Process `json:"process"`
	PreserveFds int            `json:"preserveFds,omitempty"`
	ConsoleFd   int            `json:"consoleFd"` // the connected console socket in the child, or -1
	StateDirFd  int            `json:"stateDirFd"`
	FifoName    string         `json:"fifoName,omitempty"`
	Hooks       []specs.Hook   `json:"hooks,omitempty"` // startContainer, run in the jail
	State       specs.State    `json:"state"`
	Exec        bool           `json:"exec,omitempty"` // knast exec: no fifo, no hooks
}

// Message types of the init protocol, one JSON object per line on the sync socket.
const (
	MsgConfig = "config" // parent → init
	MsgReady  = "ready"  // init → parent: waiting on the fifo (create) or about to exec (exec)
	MsgError  = "error"  // init → parent, then the init exits
)

// Message is one line of the init protocol.
type Message struct {
	Type   string      `json:"type"`
	Config *InitConfig `json:"config,omitempty"`
	Error  string      `json:"error,omitempty"`
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

// Expect reads one message of type typ; an error message becomes an *InitError.
func (c *Conn) Expect(typ string) (Message, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, fmt.Errorf("init protocol: %w", err)
	}
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return Message{}, fmt.Errorf("decode init message %q: %w", line, err)
	}
	if m.Type == MsgError {
		return m, &InitError{Msg: m.Error}
	}
	if m.Type != typ {
		return m, fmt.Errorf("init protocol: got %q, want %q", m.Type, typ)
	}
	return m, nil
}

// InitError is an error reported by the container's init.
type InitError struct{ Msg string }

func (e *InitError) Error() string { return e.Msg }
