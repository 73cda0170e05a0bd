package build

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// FuzzDockerfile feeds arbitrary Dockerfiles, a build arg and a --target through what knast build
// does before it touches a rootfs: parsing, the ARGs before FROM, the stage plan, shell-form and
// heredoc arguments of RUN/CMD/ENTRYPOINT, and EXPOSE port ranges. None may panic; errors name the
// Dockerfile; a plan lists distinct stages in Dockerfile order ending with the target.
func FuzzDockerfile(f *testing.F) {
	seeds := []string{
		"FROM busybox\nRUN echo hi\nCMD [\"sh\"]\n",
		"ARG BASE=alpine\nFROM $BASE AS a\nRUN <<EOF\n#!/bin/sh\necho x\nEOF\nFROM a\nCOPY --from=0 /x /y\nEXPOSE 80-90/tcp 53/udp\n",
		"FROM scratch AS s\nFROM s\nFROM 1\nCOPY --from=-1 / /\nWORKDIR ../../../../etc\n",
		"# escape=`\nFROM busybox\nRUN echo `\n  hi\nSHELL []\nRUN x\n",
		"FROM ${X:?unset}\n",
		"ARG A=${A}${A}${A}\nFROM busybox:${A:-1}\nEXPOSE 0-65535 99999 -1\n",
		"FROM busybox\nRUN cat <<A <<B\nx\nA\ny\nB\nENTRYPOINT <<E\necho\nE\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "A=1", "")
	}
	f.Fuzz(func(t *testing.T, data []byte, buildArg, target string) {
		df, err := parseDockerfile("Dockerfile", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "Dockerfile") {
				t.Fatalf("parse error does not name the file: %v", err)
			}
			return
		}
		args := map[string]string{}
		if k, v, ok := strings.Cut(buildArg, "="); ok {
			args[k] = v
		}
		meta, err := df.evalMetaArgs(args, map[string]bool{}, platformArgs{"linux", "amd64", ""}, platformArgs{"linux", "amd64", ""})
		if err != nil {
			return
		}
		order, steps, err := df.plan(target, meta)
		if err == nil {
			if len(order) == 0 || !slices.IsSorted(order) || len(slices.Compact(slices.Clone(order))) != len(order) {
				t.Fatalf("plan %v is not distinct stages in order", order)
			}
			if order[0] < 0 || order[len(order)-1] >= len(df.stages) || steps < len(order) {
				t.Fatalf("plan %v (%d steps) out of range of %d stages", order, steps, len(df.stages))
			}
		}
		for _, st := range df.stages {
			for _, c := range st.Commands {
				switch c := c.(type) {
				case *instructions.RunCommand:
					shellArgs(c.ShellDependantCmdLine, []string{"/bin/sh", "-c"})
				case *instructions.CmdCommand:
					shellArgs(c.ShellDependantCmdLine, []string{"/bin/sh", "-c"})
				case *instructions.EntrypointCommand:
					shellArgs(c.ShellDependantCmdLine, []string{"/bin/sh", "-c"})
				case *instructions.ExposeCommand:
					for _, p := range c.Ports {
						if ports, err := expandPorts(p); err == nil && len(ports) > 65536*2 {
							t.Fatalf("EXPOSE %s expands to %d ports", p, len(ports))
						}
					}
				}
			}
		}
	})
}
