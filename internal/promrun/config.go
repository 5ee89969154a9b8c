package promrun

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v2"
)

// The structs below are the small subset of the Prometheus configuration
// format that promrun writes. They are kept local (not the prometheus/config
// package) so the generated file stays loadable by older Prometheus releases
// such as Debian 12's 2.42.

type promConfig struct {
	Global        globalConfig   `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files,omitempty"`
	Alerting      *alertingCfg   `yaml:"alerting,omitempty"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs,omitempty"`
}

type globalConfig struct {
	ScrapeInterval     string `yaml:"scrape_interval"`
	ScrapeTimeout      string `yaml:"scrape_timeout"`
	EvaluationInterval string `yaml:"evaluation_interval"`
}

type alertingCfg struct {
	Alertmanagers []alertmanagerCfg `yaml:"alertmanagers"`
}

type alertmanagerCfg struct {
	Scheme        string         `yaml:"scheme,omitempty"`
	PathPrefix    string         `yaml:"path_prefix,omitempty"`
	StaticConfigs []staticConfig `yaml:"static_configs"`
}

type scrapeConfig struct {
	JobName       string         `yaml:"job_name"`
	HonorLabels   bool           `yaml:"honor_labels"`
	MetricsPath   string         `yaml:"metrics_path,omitempty"`
	StaticConfigs []staticConfig `yaml:"static_configs"`
}

type staticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels,omitempty"`
}

// RenderConfig returns the prometheus.yml that Start writes for opts (write it to ConfigPath, then Reload).
func RenderConfig(opts Options) ([]byte, error) {
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = defaultScrapeInterval
	}
	if opts.ScrapeInterval < time.Millisecond {
		return nil, fmt.Errorf("scrape interval %v: must be at least 1ms", opts.ScrapeInterval)
	}
	iv := promDuration(opts.ScrapeInterval)
	cfg := promConfig{
		Global: globalConfig{
			ScrapeInterval:     iv,
			ScrapeTimeout:      iv, // must not exceed scrape_interval (default 10s would)
			EvaluationInterval: iv,
		},
		RuleFiles: opts.RuleFiles,
	}

	// Targets that share a job name become several static_configs of one job:
	// Prometheus rejects duplicate job names.
	jobIndex := map[string]int{}
	for i, t := range opts.Targets {
		if t.Address == "" {
			return nil, fmt.Errorf("target %d (job %q): empty address", i, t.Job)
		}
		job := t.Job
		if job == "" {
			job = "job" + fmt.Sprint(i)
		}
		sc := staticConfig{Targets: []string{t.Address}, Labels: t.Labels}
		if j, ok := jobIndex[job]; ok {
			if cfg.ScrapeConfigs[j].MetricsPath != t.MetricsPath {
				return nil, fmt.Errorf("job %q: targets with different metrics paths %q and %q", job, cfg.ScrapeConfigs[j].MetricsPath, t.MetricsPath)
			}
			cfg.ScrapeConfigs[j].StaticConfigs = append(cfg.ScrapeConfigs[j].StaticConfigs, sc)
			continue
		}
		jobIndex[job] = len(cfg.ScrapeConfigs)
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, scrapeConfig{
			JobName:       job,
			HonorLabels:   true,
			MetricsPath:   t.MetricsPath,
			StaticConfigs: []staticConfig{sc},
		})
	}

	if opts.AlertmanagerURL != "" {
		u, err := url.Parse(opts.AlertmanagerURL)
		if err != nil {
			return nil, fmt.Errorf("parse alertmanager URL %q (want scheme://host:port[/prefix]): %w", opts.AlertmanagerURL, err)
		}
		if u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("alertmanager URL %q: want scheme://host:port[/prefix]", opts.AlertmanagerURL)
		}
		cfg.Alerting = &alertingCfg{Alertmanagers: []alertmanagerCfg{{
			Scheme:        u.Scheme,
			PathPrefix:    u.Path,
			StaticConfigs: []staticConfig{{Targets: []string{u.Host}}},
		}}}
	}

	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal prometheus config: %w", err)
	}
	return out, nil
}

// writeConfig renders opts and writes it to dir/prometheus.yml, returning the path.
func writeConfig(dir string, opts Options) (string, error) {
	data, err := RenderConfig(opts)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// promDuration formats d as a Prometheus duration (e.g. "1s", "1500ms").
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
