package build

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// defaultShell is the shell of shell-form instructions until SHELL changes it.
var defaultShell = []string{"/bin/sh", "-c"}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	name     string // as the user gave it, for messages
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	lex      *shell.Lex
}

// parseDockerfile parses data; errors name name:line.
func parseDockerfile(name string, data []byte) (*dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, locErr(name, err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, locErr(name, err)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM instruction", name)
	}
	return &dockerfile{name: name, stages: stages, metaArgs: metaArgs, lex: shell.NewLex(res.EscapeToken)}, nil
}

// locErr turns a BuildKit parse error into "FILE:LINE: message".
func locErr(name string, err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return fmt.Errorf("%s:%d: %s", name, le.Locations[0][0].Start.Line, innerMessage(err))
	}
	return fmt.Errorf("%s: %s", name, innerMessage(err))
}

// innerMessage drops BuildKit's "dockerfile parse error on line N: " prefix, the location is ours.
func innerMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "dockerfile parse error on line ") && i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// line returns the first line of a command's location.
func line(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

// vars is an ordered environment for the shell lexer: later Set calls override earlier values.
type vars struct {
	keys []string
	m    map[string]string
}

func newVars() *vars { return &vars{m: map[string]string{}} }

func (v *vars) Get(k string) (string, bool) { s, ok := v.m[k]; return s, ok }
func (v *vars) Keys() []string              { return slices.Clone(v.keys) }

func (v *vars) Set(k, val string) {
	if _, ok := v.m[k]; !ok {
		v.keys = append(v.keys, k)
	}
	v.m[k] = val
}

func (v *vars) clone() *vars {
	c := &vars{keys: slices.Clone(v.keys), m: make(map[string]string, len(v.m))}
	for k, s := range v.m {
		c.m[k] = s
	}
	return c
}

// overlay returns v with the entries of env (KEY=VALUE) set over it: ENV beats ARG.
func (v *vars) overlay(env []string) *vars {
	c := v.clone()
	for _, e := range env {
		k, val, _ := strings.Cut(e, "=")
		c.Set(k, val)
	}
	return c
}

// sorted returns KEY=VALUE lines in key order, for cache keys.
func (v *vars) sorted() []string {
	out := make([]string, 0, len(v.m))
	for k, s := range v.m {
		out = append(out, k+"="+s)
	}
	sort.Strings(out)
	return out
}

// metaArgs evaluates the ARGs before the first FROM with the build args; used records which build
// args something consumed.
func (d *dockerfile) evalMetaArgs(buildArgs map[string]string, used map[string]bool, platform, host platformArgs) (*vars, error) {
	meta := newVars()
	// BuildKit's automatic platform ARGs: global, and visible in a stage once it declares them.
	platform.set(meta, "TARGET")
	host.set(meta, "BUILD")
	for _, a := range d.metaArgs {
		for _, kv := range a.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				used[kv.Key] = true
				meta.Set(kv.Key, v)
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := d.lex.ProcessWord(*kv.Value, meta)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: ARG %s: %w", d.name, line(a.Location()), kv.Key, err)
			}
			meta.Set(kv.Key, v)
		}
	}
	return meta, nil
}

// stageRef finds the stage a FROM or --from names: a stage name (case-insensitive) or an index,
// among the stages before `before`. ok is false for an image reference.
func (d *dockerfile) stageRef(ref string, before int) (int, bool, error) {
	for i := 0; i < before && i < len(d.stages); i++ {
		if d.stages[i].Name != "" && strings.EqualFold(d.stages[i].Name, ref) {
			return i, true, nil
		}
	}
	if n, err := strconv.Atoi(ref); err == nil {
		if n < 0 || n >= before {
			return 0, false, fmt.Errorf("stage %d: there are only %d stages before this one", n, before)
		}
		return n, true, nil
	}
	return 0, false, nil
}

// plan picks the stages the target needs, in Dockerfile order, and counts their steps.
func (d *dockerfile) plan(target string, meta *vars) ([]int, int, error) {
	last := len(d.stages) - 1
	if target != "" {
		i, ok, _ := d.stageRef(strings.ToLower(target), len(d.stages))
		if !ok {
			var names []string
			for _, s := range d.stages {
				if s.Name != "" {
					names = append(names, s.Name)
				}
			}
			return nil, 0, fmt.Errorf("--target %s: no such stage in %s (stages: %s)", target, d.name, strings.Join(names, ", "))
		}
		last = i
	}
	need := map[int]bool{last: true}
	for i := last; i >= 0; i-- {
		if !need[i] {
			continue
		}
		st := d.stages[i]
		base, _, err := d.lex.ProcessWord(st.BaseName, meta)
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: FROM %s: %w", d.name, line(st.Location), st.BaseName, err)
		}
		if j, ok, _ := d.stageRef(base, i); ok {
			need[j] = true
		}
		for _, c := range st.Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				from, _, err := d.lex.ProcessWord(cp.From, meta)
				if err != nil {
					from = cp.From
				}
				if j, ok, _ := d.stageRef(from, i); ok {
					need[j] = true
				}
			}
		}
	}
	var order []int
	steps := 0
	for i := 0; i <= last; i++ {
		if need[i] {
			order = append(order, i)
			steps += 1 + len(d.stages[i].Commands)
		}
	}
	return order, steps, nil
}

// shellArgs turns a shell-dependent command line (RUN, CMD, ENTRYPOINT) into argv. Heredocs follow
// BuildKit: a lone heredoc with a #! line becomes an executable file (returned in pipes, to be
// mounted under /dev/pipes), a lone heredoc is the shell's script, and heredocs after a command are
// passed to the shell as the script's here-documents.
func shellArgs(c instructions.ShellDependantCmdLine, sh []string) (args []string, pipes map[string]string, err error) {
	args = slices.Clone(c.CmdLine)
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, nil, fmt.Errorf("heredocs need the shell form (got %d arguments)", len(args))
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				name := path.Base(c.Files[0].Name)
				return []string{"/dev/pipes/" + name}, map[string]string{name: data}, nil
			}
			args = []string{data}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range c.Files {
				b.WriteString("\n")
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			args = []string{b.String()}
		}
	}
	if c.PrependShell {
		if len(sh) == 0 {
			return nil, nil, errors.New("SHELL is empty")
		}
		args = append(slices.Clone(sh), strings.Join(args, " "))
	}
	return args, nil, nil
}

// setEnv sets KEY=VALUE in env, replacing an earlier KEY in place.
func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// expandPorts turns EXPOSE's PORT[-PORT][/PROTO] into PORT/PROTO keys.
func expandPorts(p string) ([]string, error) {
	num, proto, _ := strings.Cut(p, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("EXPOSE %s: protocol %q is not tcp, udp or sctp", p, proto)
	}
	lo, hi, isRange := strings.Cut(num, "-")
	var a, z int
	if _, err := fmt.Sscanf(lo, "%d", &a); err != nil || a < 1 || a > 65535 || fmt.Sprint(a) != lo {
		return nil, fmt.Errorf("EXPOSE %s: %q is not a port", p, lo)
	}
	z = a
	if isRange {
		if _, err := fmt.Sscanf(hi, "%d", &z); err != nil || z < a || z > 65535 || fmt.Sprint(z) != hi {
			return nil, fmt.Errorf("EXPOSE %s: %q is not a port range", p, num)
		}
	}
	var out []string
	for i := a; i <= z; i++ {
		out = append(out, fmt.Sprintf("%d/%s", i, proto))
	}
	return out, nil
}

// platformArgs are the parts of a platform for the automatic TARGET* and BUILD* ARGs.
type platformArgs struct{ OS, Arch, Variant string }

func (p platformArgs) set(v *vars, prefix string) {
	full := p.OS + "/" + p.Arch
	if p.Variant != "" {
		full += "/" + p.Variant
	}
	v.Set(prefix+"PLATFORM", full)
	v.Set(prefix+"OS", p.OS)
	v.Set(prefix+"ARCH", p.Arch)
	v.Set(prefix+"VARIANT", p.Variant)
}

// proxyArgs are Docker's predefined ARGs: a --build-arg sets them for RUN without an ARG line.
var proxyArgs = []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}
