package freebsd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type pipe struct {
	io.Reader
	io.Writer
}

func TestProtocol(t *testing.T) {
	var wire bytes.Buffer
	c := NewConn(pipe{&wire, &wire})
	cfg := &InitConfig{ID: "c1", Process: &specs.Process{Args: []string{"sh"}}, ConsoleFd: -1, FifoName: "exec.fifo"}
	if err := c.Send(Message{Type: MsgConfig, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(Message{Type: MsgError, Error: "process.cwd: no"}); err != nil {
		t.Fatal(err)
	}
	c.Send(Message{Type: MsgReady})
	m, err := c.Expect(MsgConfig)
	if err != nil || m.Config.ID != "c1" || m.Config.Process.Args[0] != "sh" || m.Config.ConsoleFd != -1 {
		t.Fatalf("config = %+v, %v", m.Config, err)
	}
	var ie *InitError
	if _, err := c.Expect(MsgReady); !errors.As(err, &ie) || ie.Msg != "process.cwd: no" {
		t.Errorf("error message gave %v, want an InitError", err)
	}
	if _, err := c.Expect(MsgConfig); err == nil || !strings.Contains(err.Error(), `got "ready"`) {
		t.Errorf("wrong type gave %v", err)
	}
	if _, err := c.Expect(MsgReady); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("EOF gave %v", err)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
	for _, tc := range []struct {
		p       specs.Process
		want    string
		wantErr string
	}{
		{p: specs.Process{Args: []string{"tool"}, Env: []string{"PATH=/nonexistent:" + dir}}, want: exe},
		{p: specs.Process{Args: []string{exe}}, want: exe},
		{p: specs.Process{Args: []string{"data"}, Env: []string{"PATH=" + dir}}, wantErr: "not found"},
		{p: specs.Process{Args: []string{dir + "/missing"}}, wantErr: "process.args[0]"},
		{p: specs.Process{}, wantErr: "must not be empty"},
	} {
		got, err := LookPath(&tc.p)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want %q", tc.p.Args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %q, %v; want %q", tc.p.Args, got, err, tc.want)
		}
	}
}
