package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCALock(t *testing.T) {
	const sum = "b9f76b5271a7ac373fd5e7e1b5b826a71ddd702b42a0d104955ecb1acfffc94b"
	for _, tc := range []struct {
		name, text, err string
	}{
		{"ok", "# comment\n\npackage ca-certificates\nversion 1~x\nsha256 " + sum + "\n", ""},
		{"missing sha256", "package ca-certificates\nversion 1\n", "sha256 is missing"},
		{"missing version", "package ca-certificates\nsha256 " + sum + "\n", "version is missing"},
		{"unknown key", "package ca-certificates\nversoin 1\nsha256 " + sum + "\n", `:2: unknown key "versoin"`},
		{"short sum", "package ca-certificates\nversion 1\nsha256 abc\n", `sha256 "abc" is not 64 hex digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ca.lock")
			if err := os.WriteFile(file, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := ReadCALock(file)
			if tc.err == "" {
				if err != nil || l.Package != "ca-certificates" || l.Version != "1~x" || l.SHA256 != sum || l.File != file {
					t.Fatalf("ReadCALock: %+v, %v", l, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), file) {
				t.Fatalf("ReadCALock: error %v, want one naming %s and %q", err, file, tc.err)
			}
		})
	}
}

// TestFetchDebMismatch: a .deb whose sha256 is not the lock's stops the build, and the error names
// the lock file and both sums.
func TestFetchDebMismatch(t *testing.T) {
	lock, err := ReadCALock("ca-certificates.lock")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	damaged := []byte("not the pinned package")
	if err := os.WriteFile(filepath.Join(cache, lock.debName()), damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = FetchDeb(context.Background(), lock, cache)
	got := sha256.Sum256(damaged)
	for _, want := range []string{"has sha256 " + hex.EncodeToString(got[:]), "ca-certificates.lock pins " + lock.SHA256, "refusing to build the image"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FetchDeb with a damaged cached .deb: %v; want %q in it", err, want)
		}
	}
}

// TestFetchDebUnknownVersion: a version Debian does not serve stops the build at apt-get download,
// and the error names the lock file and how to find one it serves.
func TestFetchDebUnknownVersion(t *testing.T) {
	lock, err := ReadCALock("ca-certificates.lock")
	if err != nil {
		t.Fatal(err)
	}
	lock.Version = "0~no-such-version"
	_, err = FetchDeb(context.Background(), lock, t.TempDir())
	for _, want := range []string{"apt-get download ca-certificates=0~no-such-version (pinned in ca-certificates.lock)", "apt-cache policy ca-certificates"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FetchDeb of an unknown version: %v; want %q in it", err, want)
		}
	}
}

// TestCABundleIsUpdateCACertificates: the bundle built from the pinned package is byte for byte what
// the package's own update-ca-certificates --default writes into a fresh root (LC_ALL=C: its sort
// order), with the package unpacked by dpkg-deb, not by our reader.
func TestCABundleIsUpdateCACertificates(t *testing.T) {
	b := testBuild(nil, "")
	cache := b.DebCache
	if cache == "" {
		cache = filepath.Join(b.Repo, ".cache", "debs")
	}
	lock, err := ReadCALock("ca-certificates.lock")
	if err != nil {
		t.Fatal(err)
	}
	deb, err := FetchDeb(context.Background(), lock, cache)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ReadCAFiles(deb)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", filepath.Join(cache, lock.debName()), root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "ca-certificates.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join(root, "usr", "sbin", "update-ca-certificates"), "--default", "--sysroot", root)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("update-ca-certificates: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(root, BundlePath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Bundle, want) {
		t.Errorf("our bundle (%d bytes, %d certificates) differs from update-ca-certificates' (%d bytes, %d certificates)",
			len(ca.Bundle), ca.Certs, len(want), bytes.Count(want, []byte("BEGIN CERTIFICATE")))
	}
	copyright, err := os.ReadFile(filepath.Join(root, CopyrightPath))
	if err != nil || !bytes.Equal(copyright, ca.Copyright) {
		t.Errorf("copyright differs from the package's (%v)", err)
	}
	t.Logf("%s %s: %d certificates, %d bytes", lock.Package, lock.Version, ca.Certs, len(ca.Bundle))
}
