package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BinDirEnv names the environment variable that points at the control-plane binaries.
const BinDirEnv = "PROMQL_ADAPTER_CLUSTER_BIN"

// kwokStagesName is the kwok stages file that hack/cluster/build.sh copies next to the binaries.
const kwokStagesName = "kwok-stages.yaml"

// requiredBinaries returns the executables Start needs in the bin dir.
func requiredBinaries() []string {
	return []string{ComponentEtcd, ComponentAPIServer, ComponentControllerManager, ComponentKwok}
}

// BinDirFromEnv returns $PROMQL_ADAPTER_CLUSTER_BIN, or an error telling to run
// `make cluster-bins` if it is unset or a binary is missing.
func BinDirFromEnv() (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		return "", fmt.Errorf("localcluster: %s is not set; run `make cluster-bins` and set it to the printed bin dir (.cache/cluster/k8s-v1.37.2/bin)", BinDirEnv)
	}
	if err := checkBinDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkBinDir returns an error naming every required binary missing from dir.
func checkBinDir(dir string) error {
	var errs []error
	for _, b := range requiredBinaries() {
		p := filepath.Join(dir, b)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		case st.IsDir() || st.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s: not an executable file", p))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("localcluster: control-plane binaries missing in %s; run `make cluster-bins`: %w", dir, errors.Join(errs...))
	}
	return nil
}

// BinaryMinor returns the minor version of the kube-apiserver in binDir (36 for "Kubernetes v1.36.3").
func BinaryMinor(ctx context.Context, binDir string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, ComponentAPIServer), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("kube-apiserver --version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "Kubernetes v%d.%d", &major, &minor); err != nil {
		return 0, fmt.Errorf("kube-apiserver --version printed %q: %w", out, err)
	}
	return minor, nil
}

// ScaleToZeroGateArgs returns the flag that turns on HPAScaleToZero (an HPA with minReplicas 0 on
// Object/External metrics) for kube-apiserver and kube-controller-manager of minor version minor:
// none from 1.37, where the gate is beta and on by default; before, it is alpha and off.
func ScaleToZeroGateArgs(minor int) []string {
	if minor >= 37 {
		return nil
	}
	return []string{"--feature-gates=HPAScaleToZero=true"}
}
