package image

import (
	"errors"
	"io"
	"sync"

	"github.com/knast/knast/internal/image/unpack"
)

// A layer is decompressed in its own goroutine at most readAheadChunks*readAheadChunk bytes ahead
// of its extraction: decompression (most of an unpack's CPU) then runs beside the tar extraction
// of the same layer, or of the layer below while this one waits for its lower dirs.
const (
	readAheadChunk  = 1 << 20
	readAheadChunks = 32
)

// readAhead is the uncompressed tar stream of one layer blob, produced by a goroutine. The blob's
// digest is checked when the goroutine reads it to its end (OpenBlob's reader); a mismatch, like
// any read error, is what Read returns after the data, so the extraction fails and its layer is
// discarded.
type readAhead struct {
	ch   chan []byte // filled chunks; closed after err is set
	free chan []byte // drained chunks, reused
	stop chan struct{}
	done chan struct{}
	err  error
	cur  []byte
	last []byte
	once sync.Once
}

// startReadAhead starts decompressing the blob open returns.
func startReadAhead(open func() (io.ReadCloser, error)) *readAhead {
	ra := &readAhead{
		ch:   make(chan []byte, readAheadChunks),
		free: make(chan []byte, readAheadChunks+2),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go ra.run(open)
	return ra
}

func (ra *readAhead) run(open func() (io.ReadCloser, error)) {
	defer close(ra.done)
	defer close(ra.ch)
	ra.err = ra.produce(open)
}

func (ra *readAhead) produce(open func() (io.ReadCloser, error)) error {
	blob, err := open()
	if err != nil {
		return err
	}
	defer blob.Close()
	zr, err := unpack.Decompress(blob)
	if err != nil {
		return err
	}
	defer zr.Close()
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		default:
			buf = make([]byte, readAheadChunk)
		}
		n, err := fill(zr, buf[:cap(buf)])
		if n > 0 {
			select {
			case ra.ch <- buf[:n]:
			case <-ra.stop:
				return errors.New("read-ahead stopped")
			}
		}
		if errors.Is(err, io.EOF) {
			// The decoder may stop at its stream's end: read the blob to its end too, so that
			// its digest is checked.
			if _, err := io.Copy(io.Discard, blob); err != nil {
				return err
			}
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

// fill reads into b until it is full or r fails (io.EOF included).
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.last != nil {
			select {
			case ra.free <- ra.last[:cap(ra.last)]:
			default:
			}
			ra.last = nil
		}
		b, ok := <-ra.ch
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.last = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.done
	return nil
}
