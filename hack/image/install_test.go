//go:build install

package main

import (
	"context"
	"testing"
)

// TestImage is make image-test: the whole index (linux/amd64 and linux/arm64) built twice from this
// tree, checked as TestImageHost checks the host's. Not in make test: cross-compiling the arm64
// binaries cold takes tens of minutes on two cores.
func TestImage(t *testing.T) {
	b := testBuild(Platforms, t.TempDir())
	first, err := b.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, b, first)
}
