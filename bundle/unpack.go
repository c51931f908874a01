package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Errors of Unpack, for errors.Is.
var (
	ErrUnsafeEntry  = errors.New("unsafe entry")
	ErrLimit        = errors.New("bundle exceeds a limit")
	ErrCorrupt      = errors.New("bundle is not a complete gzipped tarball (nor a zstd one)")
	ErrUnsupported  = errors.New("unsupported entry type")
	errStopByCancel = errors.New("unpacking cancelled")
)

// Limits bound what one bundle may unpack to.
type Limits struct {
	MaxTotalBytes int64 // sum of regular file sizes
	MaxEntryBytes int64 // one regular file
	MaxEntries    int   // entries of any type
	MaxPathLen    int   // bytes of an entry's name (and of a link target)
}

// DefaultLimits: 2 GiB in total and per file, 200 000 entries, names up
// to 4096 bytes (PATH_MAX).
func DefaultLimits() Limits {
	return Limits{
		MaxTotalBytes: 2 << 30,
		MaxEntryBytes: 2 << 30,
		MaxEntries:    200_000,
		MaxPathLen:    4096,
	}
}

// ioBuf sizes each of the unpacker's buffers (about 7 of them). Every
// deploy allocates them afresh after keter gave its memory back, and 1 MB
// buffers cost a 2.7 MB bundle 20 ms more in page faults than 256 KB
// ones, which unpack a 206 MB bundle as fast.
const ioBuf = 256 << 10

// Unpack extracts the gzipped tarball archive into dest, which it creates
// (mode 0755; an existing empty folder is fine). Extraction is confined to
// dest with os.Root, and entries are refused when they would escape it or
// are not plain content: absolute names, `..` components, symlinks whose
// target leaves dest (or that sit below another symlink), hard links to
// anything but a regular file already unpacked, devices, FIFOs and other
// special files. Modes are normalised for apps running as another user and
// for nginx: folders 0755, files 0644, or 0755 when the tarball gave any
// exec bit; setuid, setgid and sticky bits are dropped.
//
// Every error names the entry. On error dest holds a partial tree: the
// caller must remove dest (keter never starts an app from it). A gzip
// stream that ends early or has a bad checksum is an error even when the
// tar part was complete.
func Unpack(ctx context.Context, archive, dest string, lim Limits) error {
	_, err := unpackFile(ctx, archive, dest, lim, nil, nil)
	return err
}

// UnpackDigest is Unpack that also returns the archive's sha256 (as
// Digest), reading the file once instead of twice.
func UnpackDigest(ctx context.Context, archive, dest string, lim Limits) (string, error) {
	h := sha256.New()
	return unpackFile(ctx, archive, dest, lim, h, nil)
}

// UnpackSums is UnpackDigest that also returns the BLAKE3 of each file it
// wrote, hashed as it wrote it, for ManifestWith.
func UnpackSums(ctx context.Context, archive, dest string, lim Limits) (string, Sums, error) {
	sums := Sums{}
	digest, err := unpackFile(ctx, archive, dest, lim, sha256.New(), sums)
	if err != nil {
		return "", nil, err
	}
	return digest, sums, nil
}

func unpackFile(ctx context.Context, archive, dest string, lim Limits, h hash.Hash, sums Sums) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", fmt.Errorf("unpacking bundle: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if h != nil {
		r = io.TeeReader(f, h)
	}
	if err := unpackReader(ctx, f, r, dest, lim, sums); err != nil {
		return "", err
	}
	if h == nil {
		return "", nil
	}
	// The gzip reader may stop short of the file's last bytes.
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing bundle %s: %w", archive, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func unpackReader(ctx context.Context, f *os.File, r io.Reader, dest string, lim Limits, sums Sums) error {
	archive := f.Name()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("unpacking bundle: %w", err)
	}
	if err := os.Chmod(dest, 0o755); err != nil {
		return fmt.Errorf("unpacking bundle: %w", err)
	}
	names, err := readNames(dest, 1)
	if err != nil {
		return fmt.Errorf("unpacking bundle: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("unpacking bundle: destination %s must be a new or empty folder", dest)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("unpacking bundle: %w", err)
	}
	defer root.Close()
	// Small bundles (and the fuzzer) need no megabyte buffers.
	var bufs *ioBufs
	if fi, err := f.Stat(); err == nil && fi.Size() < ioBuf {
		bufs = newIOBufs(max(int(fi.Size()), 64<<10))
	} else {
		bufs = bufPool.Get().(*ioBufs)
		defer bufPool.Put(bufs)
	}
	u := &unpacker{ctx: ctx, root: root, lim: lim, buf: bufs.buf, sums: sums}
	if err := u.run(r, bufs); err != nil {
		return fmt.Errorf("unpacking bundle %s: %w", archive, err)
	}
	return nil
}

// ioBufs are one unpack's buffers and gzip reader. A burst of deploys
// reuses them from bufPool rather than allocating about 2 MB per bundle:
// in a CPU profile of 100 bundles dropped at once, allocating, clearing,
// collecting and returning those pages to the OS cost about a tenth of
// keter's CPU. The pool empties itself after two idle collections.
type ioBufs struct {
	buf    []byte
	br     *bufio.Reader
	zr     *gzip.Reader
	zd     *zstd.Decoder
	chunks [][]byte
}

var bufPool = sync.Pool{New: func() any { return newIOBufs(ioBuf) }}

func newIOBufs(size int) *ioBufs {
	b := &ioBufs{buf: make([]byte, size), br: bufio.NewReaderSize(nil, size)}
	for range pipeDepth + 1 {
		b.chunks = append(b.chunks, make([]byte, size))
	}
	return b
}

type unpacker struct {
	ctx     context.Context
	root    *os.Root
	lim     Limits
	buf     []byte
	total   int64
	entries int
	// sums, when not nil, gets each regular file's BLAKE3 by its name.
	sums Sums
}

func (u *unpacker) run(r io.Reader, bufs *ioBufs) error {
	bufs.br.Reset(r)
	defer bufs.br.Reset(nil)
	zr, err := bufs.decompressor()
	if err != nil {
		return err
	}
	// Decompress ahead in another goroutine, as tar xzf runs gzip in
	// another process: inflating and writing files overlap.
	pr := newPipeReader(u.ctx, zr, bufs.chunks)
	defer pr.Close()
	tr := tar.NewReader(pr)
	for {
		if err := u.ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", errStopByCancel, err)
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading next entry: %v", ErrCorrupt, err)
		}
		if err := u.entry(tr, h); err != nil {
			return fmt.Errorf("entry %s: %w", describe(h.Name), err)
		}
	}
	// Read the rest of the stream so a truncated or corrupt end (the
	// "premature end" of a half-copied bundle) is caught.
	if _, err := io.CopyBuffer(io.Discard, pr, u.buf); err != nil {
		return fmt.Errorf("%w: after the last entry: %v", ErrCorrupt, err)
	}
	return nil
}

// zstdMagic starts every zstd frame (RFC 8878).
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// isZstd reports whether a stream starting with b is zstd: a frame, or a
// skippable frame (magic 0x184D2A50 to 0x184D2A5F, which pzstd writes
// first).
func isZstd(b []byte) bool {
	return bytes.Equal(b, zstdMagic) ||
		len(b) == 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18
}

// maxZstdWindow bounds the history a zstd bundle may ask the decoder to
// keep: zstd's levels up to 19 use at most 8 MB, and a hostile header
// must not make keter allocate gigabytes.
const maxZstdWindow = 32 << 20

// decompressor reads br (already reset onto the bundle) as gzip or, if
// it starts with zstd's magic number, zstd: zstd inflates the bench's
// 5.8 MB tarball in 5.8 ms against gzip's 24.9 ms (BENCHMARKS.md). The
// decoders are kept with the buffers for the next bundle.
func (b *ioBufs) decompressor() (io.Reader, error) {
	magic, _ := b.br.Peek(len(zstdMagic))
	if isZstd(magic) {
		var err error
		if b.zd == nil {
			// Concurrency 1 decodes in the caller's goroutine: no
			// goroutines of the decoder's own to outlive the unpack.
			b.zd, err = zstd.NewReader(b.br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		} else {
			err = b.zd.Reset(b.br)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading zstd frame: %v", ErrCorrupt, err)
		}
		return zstdReader{b.zd}, nil
	}
	var err error
	if b.zr == nil {
		b.zr, err = gzip.NewReader(b.br)
	} else {
		err = b.zr.Reset(b.br)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading gzip header: %v", ErrCorrupt, err)
	}
	return b.zr, nil
}

// zstdReader says what to do about a window beyond maxZstdWindow.
type zstdReader struct{ d *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		err = fmt.Errorf("%w: the zstd window is larger than the %d MB keter allows: compress without --long and at level 19 or below", err, maxZstdWindow>>20)
	}
	return n, err
}

// cleanName checks a tar name and returns it cleaned, "" for the root.
func (u *unpacker) cleanName(name string) (string, error) {
	if len(name) > u.lim.MaxPathLen {
		return "", fmt.Errorf("%w: name is %d bytes long, limit %d", ErrLimit, len(name), u.lim.MaxPathLen)
	}
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: empty name or NUL byte", ErrUnsafeEntry)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute name", ErrUnsafeEntry)
	}
	if strings.IndexByte(name, '\\') >= 0 {
		return "", fmt.Errorf("%w: backslash in name", ErrUnsafeEntry)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: '..' in name", ErrUnsafeEntry)
		}
	}
	n := path.Clean(name)
	if n == "." {
		return "", nil
	}
	return n, nil
}

func (u *unpacker) entry(tr *tar.Reader, h *tar.Header) error {
	u.entries++
	if u.lim.MaxEntries > 0 && u.entries > u.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrLimit, u.lim.MaxEntries)
	}
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := u.cleanName(h.Name)
	if err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if name == "" {
			return nil
		}
		if err := u.root.MkdirAll(name, 0o755); err != nil {
			return fmt.Errorf("making folder: %w", err)
		}
		return u.root.Chmod(name, 0o755)
	case tar.TypeReg: // archive/tar reports the old TypeRegA as TypeReg
		if name == "" {
			return fmt.Errorf("%w: file entry names the root", ErrUnsafeEntry)
		}
		return u.file(tr, h, name)
	case tar.TypeSymlink:
		if name == "" {
			return fmt.Errorf("%w: symlink entry names the root", ErrUnsafeEntry)
		}
		return u.symlink(h, name)
	case tar.TypeLink:
		if name == "" {
			return fmt.Errorf("%w: hard link entry names the root", ErrUnsafeEntry)
		}
		return u.hardlink(h, name)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node", ErrUnsupported)
	case tar.TypeFifo:
		return fmt.Errorf("%w: FIFO", ErrUnsupported)
	default:
		return fmt.Errorf("%w: tar type %q", ErrUnsupported, h.Typeflag)
	}
}

// mode normalises a tar mode: world-readable, exec for everyone when the
// tarball set any exec bit, never setuid/setgid/sticky.
func mode(m int64) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// prepare makes the parent folders of name and removes an existing
// non-folder at name (a later tar entry replaces an earlier one).
func (u *unpacker) prepare(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("making parent folder: %w", err)
		}
	}
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: replaces a folder", ErrUnsafeEntry)
	}
	delete(u.sums, name)
	return u.root.Remove(name)
}

func (u *unpacker) file(tr *tar.Reader, h *tar.Header, name string) error {
	if h.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrCorrupt)
	}
	if u.lim.MaxEntryBytes > 0 && h.Size > u.lim.MaxEntryBytes {
		return fmt.Errorf("%w: file is %d bytes, limit %d per file", ErrLimit, h.Size, u.lim.MaxEntryBytes)
	}
	u.total += h.Size
	if u.lim.MaxTotalBytes > 0 && u.total > u.lim.MaxTotalBytes {
		return fmt.Errorf("%w: more than %d bytes in total", ErrLimit, u.lim.MaxTotalBytes)
	}
	if err := u.prepare(name); err != nil {
		return err
	}
	m := mode(h.Mode)
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, m)
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	var w io.Writer = f
	var sum hash.Hash
	if u.sums != nil {
		sum = newSum()
		w = io.MultiWriter(f, sum)
	}
	n, err := io.CopyBuffer(onlyWriter{w}, tr, u.buf)
	if err == nil && n != h.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		f.Close()
		if cerr := u.ctx.Err(); cerr != nil {
			return fmt.Errorf("%w: %w", errStopByCancel, cerr)
		}
		return fmt.Errorf("%w: writing file: %v", ErrCorrupt, err)
	}
	// The umask may have removed bits we need.
	if err := f.Chmod(m); err != nil {
		f.Close()
		return fmt.Errorf("setting mode: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing file: %w", err)
	}
	if sum != nil {
		u.sums[name] = [sumSize]byte(sum.Sum(nil))
	}
	return nil
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses our large buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// realParent checks that every folder above name is a real folder, not a
// symlink, so a link's target can be judged from its own position.
func (u *unpacker) realParent(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	p := ""
	for _, c := range strings.Split(dir, "/") {
		p = path.Join(p, c)
		fi, err := u.root.Lstat(p)
		if err != nil {
			return fmt.Errorf("checking parent %s: %w", p, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: link below %s, which is not a real folder", ErrUnsafeEntry, p)
		}
	}
	return nil
}

// symlink accepts a relative target whose `..` components all lead and
// climb no higher than the link's own folder, so whatever the target's
// later components are (folders or links checked the same way), it stays
// inside dest.
func (u *unpacker) symlink(h *tar.Header, name string) error {
	t := h.Linkname
	if len(t) > u.lim.MaxPathLen {
		return fmt.Errorf("%w: link target is %d bytes long, limit %d", ErrLimit, len(t), u.lim.MaxPathLen)
	}
	if t == "" || strings.IndexByte(t, 0) >= 0 || strings.IndexByte(t, '\\') >= 0 {
		return fmt.Errorf("%w: empty or odd symlink target", ErrUnsafeEntry)
	}
	if err := checkLinkTarget(name, t); err != nil {
		return err
	}
	if err := u.prepare(name); err != nil {
		return err
	}
	if err := u.realParent(name); err != nil {
		return err
	}
	if err := u.root.Symlink(t, name); err != nil {
		return fmt.Errorf("making symlink: %w", err)
	}
	return nil
}

// hardlink links name to an already unpacked regular file; os.Root keeps
// both inside dest.
func (u *unpacker) hardlink(h *tar.Header, name string) error {
	target, err := u.cleanName(h.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "" {
		return fmt.Errorf("%w: hard link to the root", ErrUnsafeEntry)
	}
	fi, err := u.root.Lstat(target)
	if err != nil {
		return fmt.Errorf("%w: hard link target %s: %v", ErrUnsafeEntry, describe(target), unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link target %s is not a regular file", ErrUnsafeEntry, describe(target))
	}
	if target == name {
		return nil
	}
	if err := u.prepare(name); err != nil {
		return err
	}
	if err := u.root.Link(target, name); err != nil {
		return fmt.Errorf("making hard link: %w", err)
	}
	if sum, ok := u.sums[target]; ok {
		u.sums[name] = sum
	}
	return nil
}

func readNames(dir string, n int) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(n)
	if err == io.EOF {
		err = nil
	}
	return names, err
}
