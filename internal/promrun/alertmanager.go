package promrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// EnvAlertmanagerBinary names the Alertmanager binary to use.
const EnvAlertmanagerBinary = "ALERTMANAGER_BIN"

// AlertmanagerOptions configures StartAlertmanager.
type AlertmanagerOptions struct {
	// Binary is the executable; empty means $ALERTMANAGER_BIN, then Debian's prometheus-alertmanager.
	Binary string
	// WorkDir holds alertmanager.yml, its log and data/; empty means a temporary directory removed by Stop.
	WorkDir string
	// Config is the alertmanager.yml content.
	Config string
}

// StartAlertmanager starts Debian's Alertmanager on 127.0.0.1 with clustering off and waits until /-/ready answers.
// The returned Server's URL, Stop and LogPath work as for Prometheus; its query API does not apply.
func StartAlertmanager(ctx context.Context, o AlertmanagerOptions) (*Server, error) {
	bin, err := lookBinary(o.Binary, EnvAlertmanagerBinary, "prometheus-alertmanager")
	if err != nil {
		return nil, err
	}
	s, abandon, err := newServer(o.WorkDir, "alertmanager-", "alertmanager.log")
	if err != nil {
		return nil, err
	}
	s.configPath = filepath.Join(s.workDir, "alertmanager.yml")
	if err := os.WriteFile(s.configPath, []byte(o.Config), 0o644); err != nil {
		abandon()
		return nil, fmt.Errorf("alertmanager config: %w", err)
	}
	args := func(addr string) []string {
		return []string{
			"--config.file=" + s.configPath,
			"--storage.path=" + filepath.Join(s.workDir, "data"),
			"--web.listen-address=" + addr,
			"--cluster.listen-address=", // no gossip port: a single local instance
		}
	}
	if err := s.start(ctx, bin, args, abandon); err != nil {
		return nil, err
	}
	return s, nil
}
