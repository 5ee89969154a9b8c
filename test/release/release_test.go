//go:build e2e

// Package release tests make release end to end: the release built for this machine's platform, pushed
// to a real registry (Debian's docker-registry, the CNCF distribution server, on 127.0.0.1), pulled back
// by digest, its SBOMs held against `go version -m`, its chart installed with Helm from the registry
// into the local control plane, and its manifest applied with kubectl.
package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/promql-adapter/promql-adapter/hack/release/release"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/registry"
)

// helmChartLayer is the media type of a Helm chart's content in an OCI registry.
const helmChartLayer = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

// TestMakeRelease runs `make release` for this machine's platform against a registry on 127.0.0.1, then
// checks what a user gets from the registry: the index pulled by digest is the one built, every child
// manifest too; each binary's SBOM lists exactly the modules `go version -m` prints for the binary
// pulled back; SHA256SUMS holds for every artifact and the pushed chart is the summed .tgz; `helm install`
// from oci://127.0.0.1:<port>/... gives Deployments that name the pushed image; `helm upgrade` and
// `helm uninstall` work from the registry; the release's manifest applies with kubectl and names the
// same image.
func TestMakeRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	helm := os.Getenv("PROMQL_ADAPTER_HELM")
	if helm == "" {
		t.Fatal("PROMQL_ADAPTER_HELM is not set: run make helm (make e2e sets it)")
	}
	binDir, err := localcluster.BinDirFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()

	// The control plane starts while the release builds.
	type started struct {
		c   *localcluster.Cluster
		err error
	}
	clusterCh := make(chan started, 1)
	go func() {
		c, err := localcluster.Start(ctx, localcluster.Options{BinDir: binDir, Logf: t.Logf})
		clusterCh <- started{c, err}
	}()
	t.Cleanup(func() {
		s := <-clusterCh
		if s.c != nil {
			if err := s.c.Stop(); err != nil {
				t.Error(err)
			}
		}
	})
	reg := registry.Start(t)
	regPath := reg + "/promql-adapter-test"
	r := release.Registry{Path: regPath}

	// make release, as a user runs it (Helm from the cache, the host's platform only).
	out := filepath.Join(t.TempDir(), "release")
	home := t.TempDir()
	env := append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data", "DOCKER_CONFIG="+home+"/docker")
	registry.MakeRelease(ctx, t, root, helm, regPath, out)

	// The version the release took: git describe's, as the tool computed it.
	v, err := release.GitVersion(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("version %s (chart %s)", v.Tag(), v.SemVer)

	// SHA256SUMS holds for every artifact, and lists them all.
	sumsData, err := os.ReadFile(filepath.Join(out, release.SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	sums, err := release.ReadSums(sumsData)
	if err != nil {
		t.Fatal(err)
	}
	binaries := []string{"promql-activator", "promql-adapter", "promql-wake"}
	platform := "linux_" + runtime.GOARCH
	want := []string{"promql-adapter-" + v.SemVer + ".oci.tar", "promql-adapter-" + v.SemVer + ".tgz", "promql-adapter-" + v.SemVer + ".yaml",
		"promql-adapter-certs.sh", release.NotesFile}
	for _, b := range binaries {
		want = append(want, b+"_"+platform+".cdx.json")
	}
	for _, f := range want {
		if _, ok := sums[f]; !ok {
			t.Errorf("%s does not list %s: %v", release.SumsFile, f, sums)
		}
	}
	for f, sum := range sums {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: sha256 %x, %s says %s", f, h, release.SumsFile, sum)
		}
	}
	// As docs/install.md tells a user to check them.
	check := exec.CommandContext(ctx, "sha256sum", "-c", release.SumsFile)
	check.Dir = out
	if o, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c %s: %v\n%s", release.SumsFile, err, o)
	}
	notes, err := os.ReadFile(filepath.Join(out, release.NotesFile))
	if err != nil {
		t.Fatal(err)
	}
	section := release.NotesSection(v)
	changelog, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := release.ChangelogSection(string(changelog), section)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(notes), body) || !strings.Contains(string(notes), r.ImageRepo()+":"+v.Tag()) {
		t.Errorf("%s lacks CHANGELOG's [%s] section or the image:\n%s", release.NotesFile, section, notes)
	}

	// Pull back by digest: the same index, the same manifests.
	local, err := layout.ImageIndexFromPath(filepath.Join(out, "image", "oci"))
	if err != nil {
		t.Fatal(err)
	}
	localDigest, err := local.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := release.PullIndex(ctx, r, r.ImageRepo()+"@"+localDigest.String())
	if err != nil {
		t.Fatal(err)
	}
	pulledDigest, err := pulled.Digest()
	if err != nil {
		t.Fatal(err)
	}
	byTag, err := release.PullIndex(ctx, r, r.ImageRepo()+":"+v.Tag())
	if err != nil {
		t.Fatal(err)
	}
	tagDigest, err := byTag.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if pulledDigest != localDigest || tagDigest != localDigest {
		t.Fatalf("index digests: built %s, pulled by digest %s, by tag %s", localDigest, pulledDigest, tagDigest)
	}
	lm, err := local.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(lm.Manifests) != 1 || len(pm.Manifests) != 1 || lm.Manifests[0].Digest != pm.Manifests[0].Digest {
		t.Fatalf("manifests: built %v, pulled %v", lm.Manifests, pm.Manifests)
	}
	t.Logf("index %s pulled back by digest and by tag %s; image %s (%s)", localDigest, v.Tag(), pm.Manifests[0].Digest, pm.Manifests[0].Platform)
	img, err := release.PullImage(ctx, r, r.ImageRepo()+"@"+pm.Manifests[0].Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	bins, err := release.GoBinaries(img)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bins {
		names = append(names, b.Name)
	}
	if !slices.Equal(names, binaries) {
		t.Fatalf("Go binaries in the pulled image: %v, want %v", names, binaries)
	}

	// Each SBOM lists exactly the modules go version -m prints for the pulled binary, and its hash.
	binTmp := t.TempDir()
	for _, b := range bins {
		p := filepath.Join(binTmp, b.Name)
		if err := os.WriteFile(p, b.Data, 0o755); err != nil {
			t.Fatal(err)
		}
		gv, err := exec.CommandContext(ctx, "go", "version", "-m", p).Output()
		if err != nil {
			t.Fatalf("go version -m %s: %v", b.Name, err)
		}
		mods, mainMod := goVersionModules(t, string(gv))
		f, err := os.Open(filepath.Join(out, b.Name+"_"+platform+".cdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		bom, err := release.ReadSBOM(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		if bom.Components != nil {
			for _, c := range *bom.Components {
				listed = append(listed, c.Name+"@"+c.Version)
			}
		}
		slices.Sort(listed)
		if !slices.Equal(listed, mods) {
			t.Errorf("%s: SBOM lists %d modules, go version -m %d:\nSBOM  %v\ngo -m %v", b.Name, len(listed), len(mods), listed, mods)
		}
		h := sha256.Sum256(b.Data)
		mc := bom.Metadata.Component
		if mc == nil || mc.Name != b.Name || mc.Version != v.Tag() || mc.Hashes == nil || (*mc.Hashes)[0].Value != hex.EncodeToString(h[:]) {
			t.Errorf("%s: SBOM's component %+v, want the binary's name, %s and sha256 %x", b.Name, mc, v.Tag(), h)
		}
		var module string
		if mc != nil && mc.Properties != nil {
			for _, p := range *mc.Properties {
				if p.Name == release.PropModule {
					module = p.Value
				}
			}
		}
		if module != mainMod {
			t.Errorf("%s: SBOM's main module %q, go version -m %q", b.Name, module, mainMod)
		}
		t.Logf("%s: SBOM and go version -m agree on %d modules", b.Name, len(mods))
	}

	// The chart in the registry is the .tgz SHA256SUMS names.
	chartTgz := "promql-adapter-" + v.SemVer + ".tgz"
	chartImg, err := release.PullImage(ctx, r, r.Path+"/charts/promql-adapter:"+v.SemVer)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := chartImg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range cm.Layers {
		if string(l.MediaType) == helmChartLayer {
			found = true
			if l.Digest.Hex != sums[chartTgz] {
				t.Errorf("chart layer %s, %s says %s", l.Digest, chartTgz, sums[chartTgz])
			}
		}
	}
	if !found {
		t.Errorf("no %s layer in the chart's manifest %+v", helmChartLayer, cm)
	}

	// helm install from the registry into the local control plane.
	s := <-clusterCh
	clusterCh <- s
	if s.err != nil {
		t.Fatal(s.err)
	}
	kc := s.c.AdminKubeconfig()
	kube, err := kubernetes.NewForConfig(s.c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	chartURL := r.ChartRepo() + "/promql-adapter"
	runHelm := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Env = env
		o, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, o)
		}
		return string(o)
	}
	const ns = release.Namespace
	wantImage := r.ImageRepo() + ":" + v.Tag()
	checkImages := func(what string, wantReplicas int32) {
		t.Helper()
		ds, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.Items) == 0 {
			t.Fatalf("%s: no Deployment in %s", what, ns)
		}
		for _, d := range ds.Items {
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Image != wantImage {
					t.Errorf("%s: Deployment %s container %s runs %q, want %q", what, d.Name, c.Name, c.Image, wantImage)
				}
			}
			if d.Name == "promql-adapter" && wantReplicas > 0 && (d.Spec.Replicas == nil || *d.Spec.Replicas != wantReplicas) {
				t.Errorf("%s: Deployment %s replicas %v, want %d", what, d.Name, d.Spec.Replicas, wantReplicas)
			}
		}
		t.Logf("%s: %d Deployment(s) in %s run %s", what, len(ds.Items), ns, wantImage)
	}
	installStart := time.Now()
	runHelm("install", "promql-adapter", chartURL, "--version", v.SemVer, "--plain-http", "--namespace", ns, "--create-namespace")
	checkImages("helm install "+chartURL, 0)
	runHelm("upgrade", "promql-adapter", chartURL, "--version", v.SemVer, "--plain-http", "--namespace", ns, "--set", "replicas=1")
	checkImages("helm upgrade --set replicas=1", 1)
	runHelm("uninstall", "promql-adapter", "--namespace", ns, "--wait")
	if ds, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil || len(ds.Items) != 0 {
		t.Errorf("after helm uninstall: %v %v", ds, err)
	}

	// kubectl apply -f the release's manifest, then delete it.
	kubectl := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", kc}, args...)...)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, o)
		}
	}
	manifest := filepath.Join(out, "promql-adapter-"+v.SemVer+".yaml")
	kubectl("apply", "-f", manifest)
	checkImages("kubectl apply -f "+filepath.Base(manifest), 0)
	kubectl("delete", "-f", manifest, "--wait=false")
	t.Logf("install, upgrade, uninstall and apply in %s; the whole test %s", time.Since(installStart).Round(time.Second), time.Since(begin).Round(time.Second))
}

// goVersionModules are the modules `go version -m` prints (dep lines, a "=>" line replacing the dep
// before it), as sorted path@version, and the main module's path.
func goVersionModules(t *testing.T, out string) ([]string, string) {
	t.Helper()
	var mods []string
	var mainMod string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimPrefix(l, "\t"), "\t")
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "mod":
			mainMod = f[1]
		case "dep":
			if len(f) < 3 {
				t.Fatalf("go version -m: %q", l)
			}
			mods = append(mods, f[1]+"@"+f[2])
		case "=>":
			if len(mods) == 0 || len(f) < 3 {
				t.Fatalf("go version -m: %q", l)
			}
			mods[len(mods)-1] = f[1] + "@" + f[2]
		}
	}
	if len(mods) == 0 || mainMod == "" {
		t.Fatalf("go version -m printed no modules:\n%s", out)
	}
	slices.Sort(mods)
	return mods, mainMod
}
