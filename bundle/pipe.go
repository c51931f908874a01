package bundle

import (
	"context"
	"io"
	"sync"
)

// pipeReader reads src ahead in its own goroutine into a few large
// buffers, so the producer (gzip inflate) and the consumer (tar + file
// writes) run at the same time. Close stops and waits for the goroutine.
type pipeReader struct {
	full  chan chunk
	free  chan []byte
	stop  chan struct{}
	wg    sync.WaitGroup
	cur   chunk
	off   int
	err   error
	close sync.Once
}

type chunk struct {
	b   []byte
	err error
}

const pipeDepth = 4

// newPipeReader reads src ahead into chunks (pipeDepth+1 of them), which
// are the caller's again once Close returns.
func newPipeReader(ctx context.Context, src io.Reader, chunks [][]byte) *pipeReader {
	p := &pipeReader{
		full: make(chan chunk, pipeDepth),
		free: make(chan []byte, len(chunks)),
		stop: make(chan struct{}),
	}
	for _, c := range chunks {
		p.free <- c
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(p.full)
		for {
			var b []byte
			select {
			case b = <-p.free:
			case <-p.stop:
				return
			case <-ctx.Done():
				p.send(chunk{err: ctx.Err()})
				return
			}
			n, err := fill(src, b[:cap(b)])
			if n > 0 {
				if !p.send(chunk{b: b[:n]}) {
					return
				}
			}
			if err != nil {
				p.send(chunk{err: err})
				return
			}
		}
	}()
	return p
}

func (p *pipeReader) send(c chunk) bool {
	select {
	case p.full <- c:
		return true
	case <-p.stop:
		return false
	}
}

func (p *pipeReader) Read(b []byte) (int, error) {
	for p.off >= len(p.cur.b) {
		if p.err != nil {
			return 0, p.err
		}
		if p.cur.b != nil {
			p.free <- p.cur.b[:cap(p.cur.b)]
			p.cur = chunk{}
		}
		c, ok := <-p.full
		if !ok {
			p.err = io.ErrClosedPipe
			return 0, p.err
		}
		if c.err != nil {
			p.err = c.err
			return 0, p.err
		}
		p.cur, p.off = c, 0
	}
	n := copy(b, p.cur.b[p.off:])
	p.off += n
	return n, nil
}

// Close stops the reading goroutine and waits for it.
func (p *pipeReader) Close() error {
	p.close.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
	return nil
}

// fill reads until b is full or src fails, keeping src's own error (unlike
// io.ReadFull, which would turn a truncated stream into a short chunk).
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := src.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
