package wsframe

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestAccept(t *testing.T) {
	// The example of RFC 6455 section 1.3.
	if got, want := Accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("Accept = %q, want %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Frame
	}{
		{"empty text", Frame{Fin: true, Op: Text}},
		{"masked text", Frame{Fin: true, Op: Text, Masked: true, Payload: []byte("hello")}},
		{"16-bit length", Frame{Fin: true, Op: Binary, Masked: true, Payload: bytes.Repeat([]byte("x"), 300)}},
		{"64-bit length", Frame{Fin: false, Op: Binary, Payload: bytes.Repeat([]byte("y"), 70000)}},
		{"close", CloseFrame(GoingAway, "bye", false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tc.f); err != nil {
				t.Fatal(err)
			}
			got, err := Read(&buf, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if got.Fin != tc.f.Fin || got.Op != tc.f.Op || got.Masked != tc.f.Masked || !bytes.Equal(got.Payload, tc.f.Payload) {
				t.Fatalf("read %+v, wrote %+v", got, tc.f)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes left", buf.Len())
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"reserved bit", "\xc1\x00", ErrProtocol},
		{"unknown opcode", "\x83\x00", ErrProtocol},
		{"long ping", "\x89\x7e\x00\x80", ErrProtocol},
		{"fragmented close", "\x08\x00", ErrProtocol},
		{"too big", "\x82\x7e\x10\x00", ErrProtocol},
		{"cut header", "\x81", io.ErrUnexpectedEOF},
		{"cut payload", "\x81\x05abc", io.ErrUnexpectedEOF},
		{"nothing", "", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.in), 1024)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCloseCode(t *testing.T) {
	if c := CloseCode(CloseFrame(GoingAway, "x", true).Payload); c != GoingAway {
		t.Fatalf("code %d", c)
	}
	if c := CloseCode(nil); c != NoStatus {
		t.Fatalf("code %d", c)
	}
}
