package release

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// SetImageRepository rewrites image.repository in a chart's values.yaml to repo, leaving every other byte
// (comments, order, quoting) as it was: the scalar is found with yaml.v3's node positions and replaced
// on its line, and the result is parsed again to check it holds repo.
func SetImageRepository(values []byte, repo string) ([]byte, error) {
	node, err := imageRepositoryNode(values)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(repo, " #\"'\n") || repo == "" {
		return nil, fmt.Errorf("image repository %q: want a registry path without spaces or quotes", repo)
	}
	lines := bytes.Split(values, []byte("\n"))
	i := node.Line - 1
	line := lines[i]
	col := node.Column - 1
	// The scalar's source text: as written (plain, or quoted with the quotes).
	old := node.Value
	switch node.Style {
	case yaml.DoubleQuotedStyle:
		old = `"` + old + `"`
	case yaml.SingleQuotedStyle:
		old = `'` + old + `'`
	case 0:
	default:
		return nil, fmt.Errorf("values.yaml line %d: image.repository has a block style the rewrite does not handle", node.Line)
	}
	if col+len(old) > len(line) || string(line[col:col+len(old)]) != old {
		return nil, fmt.Errorf("values.yaml line %d: image.repository %q is not where the parser put it", node.Line, node.Value)
	}
	lines[i] = append(append(append([]byte{}, line[:col]...), repo...), line[col+len(old):]...)
	out := bytes.Join(lines, []byte("\n"))
	check, err := imageRepositoryNode(out)
	if err != nil {
		return nil, err
	}
	if check.Value != repo {
		return nil, fmt.Errorf("values.yaml: image.repository reads %q after the rewrite, want %q", check.Value, repo)
	}
	return out, nil
}

// imageRepositoryNode is the scalar node of image.repository in values.
func imageRepositoryNode(values []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("values.yaml: not a YAML document")
	}
	n := doc.Content[0]
	for _, key := range []string{"image", "repository"} {
		n = mapValue(n, key)
		if n == nil {
			return nil, fmt.Errorf("values.yaml: no image.repository")
		}
	}
	if n.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("values.yaml line %d: image.repository is not a string", n.Line)
	}
	return n, nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// PackageChart copies chartDir, points its image.repository at imageRepo and runs `helm package` with
// the version as the chart's version and appVersion (the chart's default image tag is v<appVersion>,
// the tag the image is pushed under). It returns the .tgz's path in outDir.
func PackageChart(ctx context.Context, helm, chartDir, outDir, version, imageRepo string) (string, error) {
	tmp, err := os.MkdirTemp("", "promql-adapter-chart-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, filepath.Base(chartDir))
	if err := os.CopyFS(dst, os.DirFS(chartDir)); err != nil {
		return "", fmt.Errorf("copy chart %s: %w", chartDir, err)
	}
	vf := filepath.Join(dst, "values.yaml")
	values, err := os.ReadFile(vf)
	if err != nil {
		return "", err
	}
	if values, err = SetImageRepository(values, imageRepo); err != nil {
		return "", fmt.Errorf("%s: %w", chartDir, err)
	}
	if err := os.WriteFile(vf, values, 0o644); err != nil {
		return "", err
	}
	out, err := RunHelm(ctx, helm, "package", dst, "--version", version, "--app-version", version, "--destination", outDir)
	if err != nil {
		return "", err
	}
	// "Successfully packaged chart and saved it to: <path>"
	_, path, ok := strings.Cut(strings.TrimSpace(out), "saved it to: ")
	if !ok {
		return "", fmt.Errorf("helm package: no path in its output %q", out)
	}
	return strings.TrimSpace(path), nil
}

// RenderManifest is the packaged chart rendered for kubectl apply -f: the namespace, then every object
// of `helm template` with the serving certificate from the Secret promql-adapter-tls (made by certs.sh,
// so the manifest stays the same at every render).
func RenderManifest(ctx context.Context, helm, chartTgz, namespace string) ([]byte, error) {
	out, err := RunHelm(ctx, helm, "template", "promql-adapter", chartTgz, "--namespace", namespace,
		"--set", "tls.mode=secret", "--set", "tls.secretName=promql-adapter-tls")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# promql-adapter from %s, rendered by hack/release. Before it serves: promql-adapter-certs.sh (docs/install.md).\n", filepath.Base(chartTgz))
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", namespace)
	for _, l := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(l, "# Source: ") {
			continue
		}
		b.WriteString(l)
	}
	return b.Bytes(), nil
}

// RunHelm runs Helm's binary and returns its standard output; the error holds both outputs.
func RunHelm(ctx context.Context, helm string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, helm, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}
