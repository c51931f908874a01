// Package wsframe reads and writes WebSocket frames (RFC 6455) for keter's
// test app (internal/behaveapp) and load client (internal/loadgen): the
// opening handshake's accept key, frames, masking and close codes. It owns
// no connection and no goroutine, and must not grow into a general
// WebSocket library: no extensions, no subprotocols.
package wsframe

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Op is a frame's opcode.
type Op byte

// The opcodes of RFC 6455 section 5.2.
const (
	Continuation Op = 0x0
	Text         Op = 0x1
	Binary       Op = 0x2
	Close        Op = 0x8
	Ping         Op = 0x9
	Pong         Op = 0xA
)

// Close codes of RFC 6455 section 7.4.1.
const (
	Normal        uint16 = 1000
	GoingAway     uint16 = 1001
	ProtocolError uint16 = 1002
	NoStatus      uint16 = 1005 // never sent: a close frame without a code
	Abnormal      uint16 = 1006 // never sent: the connection ended without a close frame
	TooBig        uint16 = 1009
)

// ErrProtocol is the class of every malformed frame Read refuses.
var ErrProtocol = errors.New("websocket protocol error")

// Frame is one WebSocket frame. Payload is unmasked.
type Frame struct {
	Fin     bool
	Op      Op
	Masked  bool // sent masked: a client's frames are, a server's are not
	Payload []byte
}

// Control reports whether the opcode is a control frame's (close, ping, pong).
func (o Op) Control() bool { return o&0x8 != 0 }

const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Accept is the Sec-WebSocket-Accept value answering a Sec-WebSocket-Key.
func Accept(key string) string {
	h := sha1.Sum([]byte(key + guid))
	return base64.StdEncoding.EncodeToString(h[:])
}

// NewKey returns a fresh Sec-WebSocket-Key: 16 random bytes in base64.
func NewKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// Read reads one frame, refusing one whose payload is longer than max.
func Read(r io.Reader, max int) (Frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Fin: h[0]&0x80 != 0, Op: Op(h[0] & 0x0F), Masked: h[1]&0x80 != 0}
	if h[0]&0x70 != 0 {
		return Frame{}, fmt.Errorf("reserved bits set without an extension: %w", ErrProtocol)
	}
	switch f.Op {
	case Continuation, Text, Binary, Close, Ping, Pong:
	default:
		return Frame{}, fmt.Errorf("unknown opcode %#x: %w", f.Op, ErrProtocol)
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Frame{}, noEOF(err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Frame{}, noEOF(err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if f.Op.Control() && (n > 125 || !f.Fin) {
		return Frame{}, fmt.Errorf("control frame %#x fragmented or longer than 125 bytes: %w", f.Op, ErrProtocol)
	}
	if n > uint64(max) {
		return Frame{}, fmt.Errorf("frame of %d bytes, more than %d: %w", n, max, ErrProtocol)
	}
	var mask [4]byte
	if f.Masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return Frame{}, noEOF(err)
		}
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return Frame{}, noEOF(err)
	}
	if f.Masked {
		for i := range f.Payload {
			f.Payload[i] ^= mask[i%4]
		}
	}
	return f, nil
}

// noEOF turns an end of stream inside a frame into io.ErrUnexpectedEOF:
// only an end between frames is a plain io.EOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Write writes f in one Write, masking its payload with a fresh random key
// when f.Masked. f.Payload is left as it was.
func Write(w io.Writer, f Frame) error {
	buf := make([]byte, 0, 14+len(f.Payload))
	b0 := byte(f.Op)
	if f.Fin {
		b0 |= 0x80
	}
	var m byte
	if f.Masked {
		m = 0x80
	}
	switch n := len(f.Payload); {
	case n < 126:
		buf = append(buf, b0, m|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, b0, m|126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, b0, m|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	if !f.Masked {
		buf = append(buf, f.Payload...)
	} else {
		var mask [4]byte
		rand.Read(mask[:])
		buf = append(buf, mask[:]...)
		for i, c := range f.Payload {
			buf = append(buf, c^mask[i%4])
		}
	}
	_, err := w.Write(buf)
	return err
}

// CloseFrame is a close frame with a code and a reason.
func CloseFrame(code uint16, reason string, masked bool) Frame {
	p := binary.BigEndian.AppendUint16(nil, code)
	return Frame{Fin: true, Op: Close, Masked: masked, Payload: append(p, reason...)}
}

// CloseCode is the code of a close frame's payload, NoStatus if it has none.
func CloseCode(payload []byte) uint16 {
	if len(payload) < 2 {
		return NoStatus
	}
	return binary.BigEndian.Uint16(payload)
}
