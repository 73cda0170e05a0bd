package image

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress reports blob transfers: bars on a terminal, one line per finished blob otherwise.
type progress interface {
	// blob starts reporting one blob; kind is "blob" or "config".
	blob(kind, digest string, size int64) blobProgress
	// line prints a message between blob reports.
	line(format string, args ...any)
	wait()
}

type blobProgress interface {
	add(n int64)
	// done ends the report: skipped when the store already had the blob.
	done(err error, skipped bool)
}

func newProgress(w io.Writer) progress {
	if w == nil {
		return nopProgress{}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// A terminal of unknown width (0 columns) would show no bars at all.
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return &barProgress{p: mpb.New(mpb.WithOutput(f), mpb.WithWidth(40)), w: f}
		}
	}
	return &lineProgress{w: w}
}

type nopProgress struct{}

func (nopProgress) blob(string, string, int64) blobProgress { return nopBlob{} }
func (nopProgress) line(string, ...any)                     {}
func (nopProgress) wait()                                   {}

type nopBlob struct{}

func (nopBlob) add(int64)        {}
func (nopBlob) done(error, bool) {}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// humanSize prints a byte count like 1.2MB (decimal units, as skopeo and podman do).
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

type lineProgress struct {
	mu sync.Mutex
	w  io.Writer
}

type lineBlob struct {
	p          *lineProgress
	kind, name string
	n          int64
	mu         sync.Mutex
}

func (p *lineProgress) blob(kind, digest string, _ int64) blobProgress {
	return &lineBlob{p: p, kind: kind, name: shortDigest(digest)}
}

func (p *lineProgress) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *lineProgress) wait() {}

func (b *lineBlob) add(n int64) { b.mu.Lock(); b.n += n; b.mu.Unlock() }

func (b *lineBlob) done(err error, skipped bool) {
	b.mu.Lock()
	n := b.n
	b.mu.Unlock()
	switch {
	case err != nil:
		b.p.line("Copying %s %s failed after %s", b.kind, b.name, humanSize(n))
	case skipped:
		b.p.line("Copying %s %s skipped: already exists", b.kind, b.name)
	default:
		b.p.line("Copying %s %s done %s", b.kind, b.name, humanSize(n))
	}
}

type barProgress struct {
	p      *mpb.Progress
	w      io.Writer
	mu     sync.Mutex
	waited bool
}

func (p *barProgress) blob(kind, digest string, size int64) blobProgress {
	if size < 0 {
		size = 0
	}
	bar := p.p.AddBar(size,
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("Copying %s %s ", kind, shortDigest(digest)))),
		mpb.AppendDecorators(
			decor.OnComplete(decor.Counters(decor.SizeB1000(0), "% .1f / % .1f"), "done"),
			decor.Name(" "),
			decor.OnComplete(decor.EwmaSpeed(decor.SizeB1000(0), "% .1f", 30), ""),
		),
	)
	return &barBlob{bar: bar, last: time.Now()}
}

// line prints above the bars while they run, and plainly once they are done.
func (p *barProgress) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		fmt.Fprintf(p.w, format+"\n", args...)
		return
	}
	fmt.Fprintf(p.p, format+"\n", args...)
}

func (p *barProgress) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.waited {
		p.waited = true
		p.p.Wait()
	}
}

type barBlob struct {
	bar  *mpb.Bar
	last time.Time
}

// add is called from the one goroutine copying the blob.
func (b *barBlob) add(n int64) {
	now := time.Now()
	b.bar.EwmaIncrInt64(n, now.Sub(b.last))
	b.last = now
}

func (b *barBlob) done(err error, skipped bool) {
	if err != nil {
		b.bar.Abort(false)
		return
	}
	if skipped {
		b.bar.SetCurrent(b.bar.Current())
	}
	b.bar.SetTotal(-1, true)
}
