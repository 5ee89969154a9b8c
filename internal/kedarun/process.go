package kedarun

import (
	"fmt"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// startProc starts one KEDA process with localcluster's process handling (own process group, log file).
func startProc(name, bin string, args, env []string, logPath string) (*localcluster.Process, error) {
	p, err := localcluster.StartProcess(name, bin, args, env, logPath)
	if err != nil {
		return nil, fmt.Errorf("kedarun: %w", err)
	}
	return p, nil
}

// exited reports whether p has exited.
func exited(p *localcluster.Process) bool {
	done, _ := p.Exited()
	return done
}
