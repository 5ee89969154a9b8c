package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"
)

// Where the CA files go in the image, and where they come from in Debian's package.
const (
	BundlePath    = "etc/ssl/certs/ca-certificates.crt"       // read by Go's crypto/x509 on Linux (and by OpenSSL)
	CopyrightPath = "usr/share/doc/ca-certificates/copyright" // the package's licence terms (MPL-2.0 for Mozilla's certificates)
	mozillaDir    = "usr/share/ca-certificates/mozilla/"
)

// downloadTimeout bounds apt-get download of the pinned package.
const downloadTimeout = 5 * time.Minute

// CALock is the Debian package the image's CA bundle is built from, as pinned in ca-certificates.lock.
type CALock struct {
	File                     string // the lock file, named in every error about the package
	Package, Version, SHA256 string
}

// ReadCALock reads a lock file: "key value" lines (package, version, sha256), # comments and blank lines.
func ReadCALock(file string) (CALock, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return CALock{}, fmt.Errorf("CA bundle lock: %w", err)
	}
	l := CALock{File: file}
	fields := map[string]*string{"package": &l.Package, "version": &l.Version, "sha256": &l.SHA256}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		p, ok := fields[key]
		if !ok {
			return CALock{}, fmt.Errorf("%s:%d: unknown key %q (want package, version, sha256)", file, n, key)
		}
		*p = strings.TrimSpace(value)
	}
	for _, key := range []string{"package", "version", "sha256"} {
		if *fields[key] == "" {
			return CALock{}, fmt.Errorf("%s: %s is missing", file, key)
		}
	}
	if b, err := hex.DecodeString(l.SHA256); err != nil || len(b) != sha256.Size {
		return CALock{}, fmt.Errorf("%s: sha256 %q is not 64 hex digits", file, l.SHA256)
	}
	return l, nil
}

// debName is the cached .deb's file name (an epoch's colon would not survive every file system).
func (l CALock) debName() string {
	return strings.ReplaceAll(fmt.Sprintf("%s_%s_all.deb", l.Package, l.Version), ":", "%3a")
}

// verify checks data against the pinned sha256; the error names the file, both sums and the lock.
func (l CALock) verify(file string, data []byte) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != l.SHA256 {
		return fmt.Errorf("%s has sha256 %s but %s pins %s for %s %s: refusing to build the image "+
			"(if Debian changed the package, check the new one and update the lock; if the file is damaged, delete it)",
			file, got, l.File, l.SHA256, l.Package, l.Version)
	}
	return nil
}

// FetchDeb returns the pinned package: from cacheDir when it is there, else downloaded into it with
// apt-get download; either way checked against the lock's sha256.
func FetchDeb(ctx context.Context, l CALock, cacheDir string) ([]byte, error) {
	file := filepath.Join(cacheDir, l.debName())
	if data, err := os.ReadFile(file); err == nil {
		return data, l.verify(file, data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("CA bundle cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return nil, fmt.Errorf("CA bundle cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	spec := l.Package + "=" + l.Version
	cmd := exec.CommandContext(ctx, "apt-get", "download", spec)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s (pinned in %s): %w\n%s\n(run apt-get update first; if Debian no longer serves "+
			"this version, pin one it does: apt-cache policy %s)", spec, l.File, err, bytes.TrimSpace(out), l.Package)
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files in %s, want 1 (%v)", spec, len(debs), tmp, err)
	}
	data, err := os.ReadFile(debs[0])
	if err != nil {
		return nil, err
	}
	if err := l.verify(debs[0], data); err != nil {
		return nil, err
	}
	if err := os.Rename(debs[0], file); err != nil {
		return nil, fmt.Errorf("CA bundle cache: %w", err)
	}
	return data, nil
}

// CAFiles are the CA files the image's layer takes from the package.
type CAFiles struct {
	Bundle    []byte // every certificate update-ca-certificates enables by default, in its order
	Copyright []byte // the package's copyright file
	Certs     int    // how many certificates the bundle holds
}

// ReadCAFiles builds the bundle from a ca-certificates .deb as `update-ca-certificates --default`
// does: each usr/share/ca-certificates/mozilla/*.crt in sorted order (byte order, as sort does under
// LC_ALL=C), each ending in a newline. Every file must be one PEM certificate.
func ReadCAFiles(deb []byte) (CAFiles, error) {
	files, err := debData(deb, func(name string) bool {
		return name == CopyrightPath || (strings.HasPrefix(name, mozillaDir) && path.Ext(name) == ".crt" && path.Dir(name)+"/" == mozillaDir)
	})
	if err != nil {
		return CAFiles{}, err
	}
	var out CAFiles
	out.Copyright = files[CopyrightPath]
	if len(out.Copyright) == 0 {
		return CAFiles{}, fmt.Errorf("the package has no %s", CopyrightPath)
	}
	delete(files, CopyrightPath)
	var bundle bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(files)) {
		data := files[name]
		block, rest := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			return CAFiles{}, fmt.Errorf("%s in the package is not one PEM certificate", name)
		}
		bundle.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			bundle.WriteByte('\n')
		}
		out.Certs++
	}
	if out.Certs == 0 {
		return CAFiles{}, fmt.Errorf("the package has no %s*.crt", mozillaDir)
	}
	out.Bundle = bundle.Bytes()
	return out, nil
}

// debData reads a .deb (an ar archive: debian-binary, control.tar.*, data.tar.*) and returns the
// regular files of its data archive that keep accepts, by name without the leading "./".
func debData(deb []byte, keep func(name string) bool) (map[string][]byte, error) {
	members, err := readAr(deb)
	if err != nil {
		return nil, fmt.Errorf("read .deb: %w", err)
	}
	var r io.Reader
	for name, data := range members {
		switch name {
		case "data.tar":
			r = bytes.NewReader(data)
		case "data.tar.xz":
			if r, err = xz.NewReader(bytes.NewReader(data)); err != nil {
				return nil, fmt.Errorf("read .deb %s: %w", name, err)
			}
		case "data.tar.gz":
			if r, err = gzip.NewReader(bytes.NewReader(data)); err != nil {
				return nil, fmt.Errorf("read .deb %s: %w", name, err)
			}
		default:
			if strings.HasPrefix(name, "data.tar") {
				return nil, fmt.Errorf("read .deb: %s: unsupported compression (want data.tar, data.tar.xz or data.tar.gz)", name)
			}
		}
	}
	if r == nil {
		return nil, errors.New("read .deb: no data.tar member")
	}
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read .deb data archive: %w", err)
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		if h.Typeflag != tar.TypeReg || !keep(name) {
			continue
		}
		if out[name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("read .deb %s: %w", name, err)
		}
	}
}

// readAr splits a common-format ar archive (what dpkg writes) into its members.
func readAr(data []byte) (map[string][]byte, error) {
	const magic, hdrLen = "!<arch>\n", 60
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, errors.New("not an ar archive")
	}
	out := map[string][]byte{}
	for off := len(magic); off < len(data); {
		if len(data)-off < hdrLen {
			return nil, fmt.Errorf("truncated ar header at byte %d", off)
		}
		hdr := data[off : off+hdrLen]
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad ar header at byte %d", off)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil || size < 0 || size > len(data)-off-hdrLen {
			return nil, fmt.Errorf("ar member %q: bad size %q", name, strings.TrimSpace(string(hdr[48:58])))
		}
		off += hdrLen
		out[name] = data[off : off+size]
		off += size + size%2
	}
	return out, nil
}
