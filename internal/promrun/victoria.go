package promrun

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// EnvVictoriaMetricsBinary names the VictoriaMetrics binary to use.
const EnvVictoriaMetricsBinary = "VICTORIA_METRICS_BIN"

// StartVictoriaMetrics starts Debian's single-node VictoriaMetrics on 127.0.0.1, scraping
// opts.Targets at opts.ScrapeInterval with its own Prometheus-compatible scraper, and waits
// until /-/ready answers. Its query API is Prometheus's, so URL, API, Stop and WaitForSeries
// work as for Prometheus; RuleFiles, AlertmanagerURL and Web do not apply.
//
// Samples are visible to queries one second after they are scraped
// (-search.latencyOffset=1s; VictoriaMetrics' default hides the last 30 s).
func StartVictoriaMetrics(ctx context.Context, opts Options) (*Server, error) {
	if len(opts.RuleFiles) > 0 || opts.AlertmanagerURL != "" || opts.Web != nil {
		return nil, fmt.Errorf("victoria-metrics: rule files, alerting and Web are Prometheus options")
	}
	bin, err := lookBinary(opts.Binary, EnvVictoriaMetricsBinary, "victoria-metrics")
	if err != nil {
		return nil, err
	}
	s, abandon, err := newServer(opts.WorkDir, "victoria-metrics-", "victoria-metrics.log")
	if err != nil {
		return nil, err
	}
	if s.configPath, err = writeConfig(s.workDir, opts); err != nil {
		abandon()
		return nil, fmt.Errorf("victoria-metrics scrape config: %w", err)
	}
	args := func(addr string) []string {
		return append([]string{
			"-httpListenAddr=" + addr,
			"-storageDataPath=" + filepath.Join(s.workDir, "data"),
			"-promscrape.config=" + s.configPath,
			// The file is a prometheus.yml; VictoriaMetrics knows no evaluation_interval.
			"-promscrape.config.strictParse=false",
			"-search.latencyOffset=" + time.Second.String(),
			"-search.disableCache",
		}, opts.ExtraArgs...)
	}
	if err := s.start(ctx, bin, args, abandon); err != nil {
		return nil, err
	}
	return s, nil
}
