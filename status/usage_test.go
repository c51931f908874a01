package status

import "testing"

func TestBytesAndCPU(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {3 << 20, "3.0 MiB"}, {5 << 30, "5.0 GiB"}, {1 << 62, "4096.0 PiB"}} {
		if got := Bytes(tt.n); got != tt.want {
			t.Errorf("Bytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := CPU(1_234_567_890); got != "1.23 s" {
		t.Errorf("CPU = %q", got)
	}
}
