// Package build builds OCI images from Dockerfiles without a daemon: `knast build`.
//
// The Dockerfile is parsed with BuildKit's parser and instruction packages; ARG and ENV are expanded
// with BuildKit's shell lexer. Each stage's root filesystem is an overlay mount: the lower layers are
// the base image unpacked once (cached by its layer chain) and the directories of the earlier steps;
// each filesystem step (RUN, COPY, ADD) writes into a fresh upper directory, which is at the same time
// the step's diff: it becomes an OCI layer (whiteouts from overlay's 0:0 character devices and opaque
// directories) and a lower layer of the next step. RUN steps run in knast containers on the stage's
// rootfs, in-process through internal/container. COPY and ADD resolve every path inside the rootfs,
// so a symlink in the image never leads a write outside it.
//
// Steps are cached under the storage directory (build/cache, build/layers): a step is reused when
// its parent, its instruction (expanded), the stage configuration and its inputs (digests of the
// copied files, build args in scope) are the same.
package build

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/knast/knast/internal/container"
)

// Network modes of RUN steps.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// Options configure one build.
type Options struct {
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile's path; "" means ContextDir/Dockerfile.
	Dockerfile string
	// Tags name the image in the store (NAME[:TAG]); without any the image gets a generated name.
	Tags []string
	// BuildArgs are --build-arg values (KEY=VALUE).
	BuildArgs map[string]string
	// Target is the stage to build; "" means the last.
	Target string
	// NoCache rebuilds every step (the results still enter the cache).
	NoCache bool
	// Platform is os/arch[/variant] of base images; "" is the host's.
	Platform string
	// Network is the RUN steps' network: NetworkHost (default), NetworkNone, or the name of a knast
	// network, which needs Networker and RunAnnotations.
	Network string
	// Networker attaches RUN containers to the named Network; RunAnnotations are the annotations that
	// ask it to (cmd/knast knows their names, the builder only passes them on).
	Networker      container.Networker
	RunAnnotations map[string]string
	// Insecure allows plain HTTP and unverified TLS for pulls and pushes.
	Insecure bool
	// OutputOCI, when set, is a file the image is also written to as an OCI archive.
	OutputOCI string
	// Push pushes every tag to its registry after the build.
	Push bool
	// Quiet streams no step output; a failing RUN's output is then part of its error.
	Quiet bool
	// StorageDir is the image store directory (--storage); the build cache lives below it.
	StorageDir string
	// StateRoot is the container state directory (--root) for RUN containers.
	StateRoot string
	// Out receives the progress lines and the steps' output; nil discards them.
	Out io.Writer
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Result is what a build made.
type Result struct {
	// Names are the normalized names the image was stored under.
	Names []string
	// ManifestDigest and ConfigDigest identify the image (the config digest is Docker's image ID).
	ManifestDigest string
	ConfigDigest   string
	// CachedSteps and Steps count the filesystem steps reused from the cache and run.
	CachedSteps, Steps int
}

// StepError is a failed step: where it is in the Dockerfile and, for RUN, the exit status and the end
// of its output.
type StepError struct {
	Step, Steps int
	File        string
	Line        int
	Instruction string
	// ExitStatus is the RUN command's status (-1 when the step failed otherwise).
	ExitStatus int
	// Output is the end of the step's output (RUN only, when it was not streamed).
	Output string
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "STEP %d/%d (%s:%d) %s: ", e.Step, e.Steps, e.File, e.Line, e.Instruction)
	if e.ExitStatus >= 0 {
		fmt.Fprintf(&b, "the command exited with status %d", e.ExitStatus)
	} else {
		b.WriteString(e.Err.Error())
	}
	if e.Output != "" {
		b.WriteString("\noutput:\n")
		b.WriteString(strings.TrimRight(e.Output, "\n"))
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }
