package localcluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// BinaryMinor reads the minor version kube-apiserver --version prints, and the scale-to-zero gate
// is turned on only before 1.37.
func TestBinaryMinor(t *testing.T) {
	for _, tc := range []struct {
		printed string
		minor   int
		gate    []string
		wantErr bool
	}{
		{printed: "Kubernetes v1.37.2", minor: 37},
		{printed: "Kubernetes v1.36.3", minor: 36, gate: []string{"--feature-gates=HPAScaleToZero=true"}},
		{printed: "Kubernetes v1.35.4-dirty", minor: 35, gate: []string{"--feature-gates=HPAScaleToZero=true"}},
		{printed: "v1.36.3", wantErr: true},
	} {
		dir := t.TempDir()
		script := "#!/bin/sh\n[ \"$1\" = --version ] && echo '" + tc.printed + "'\n"
		if err := os.WriteFile(filepath.Join(dir, ComponentAPIServer), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		minor, err := BinaryMinor(context.Background(), dir)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v, want error %v", tc.printed, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if minor != tc.minor {
			t.Errorf("%q: minor %d, want %d", tc.printed, minor, tc.minor)
		}
		if got := ScaleToZeroGateArgs(minor); !slices.Equal(got, tc.gate) {
			t.Errorf("1.%d: gate args %q, want %q", minor, got, tc.gate)
		}
	}
}
