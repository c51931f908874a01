package bundle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// BenchmarkUnpack compares Unpack with `tar xzf` on the same bundle.
// Run: go test -run '^$' -bench BenchmarkUnpack -benchtime 5x ./bundle
func BenchmarkUnpack(b *testing.B) {
	dir := b.TempDir()
	archive := filepath.Join(dir, "bench.keter")
	size, err := testkit.BigBundle(archive)
	if err != nil {
		b.Fatal(err)
	}
	if fi, err := os.Stat(archive); err == nil {
		b.Logf("bundle: %d MB unpacked, %d MB gzipped", size>>20, fi.Size()>>20)
	}
	run := func(b *testing.B, unpack func(dest string) error) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			dest := filepath.Join(dir, fmt.Sprintf("out-%d", i))
			if err := unpack(dest); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dest)
			b.StartTimer()
		}
	}
	b.Run("keter", func(b *testing.B) {
		run(b, func(dest string) error { return Unpack(b.Context(), archive, dest, DefaultLimits()) })
	})
	b.Run("tar-xzf", func(b *testing.B) {
		tarBin, err := exec.LookPath("tar")
		if err != nil {
			b.Skip("no tar")
		}
		run(b, func(dest string) error {
			if err := os.Mkdir(dest, 0o755); err != nil {
				return err
			}
			out, err := exec.Command(tarBin, "xzf", archive, "-C", dest).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})
}
