package release

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
)

// Property names the SBOMs use for what CycloneDX has no field for.
const (
	PropToolchain = "golang:toolchain"  // the Go version that built the binary
	PropModule    = "golang:module"     // the main module's path
	PropPackage   = "golang:package"    // the main package's path
	PropSum       = "golang:module:sum" // a module's go.sum hash (h1:...)
	PropReplaces  = "golang:replaces"   // path@version a replace directive swapped for this module
	PropBuild     = "golang:build:"     // prefix of the build settings (GOOS, GOARCH, -ldflags, ...)
	sbomSpec      = cdx.SpecVersion1_6  // the CycloneDX version written
	purlPrefix    = "pkg:golang/"       // package URL type of Go modules
	sbomTool      = "promql-adapter hack/release"
	sbomToolLib   = "github.com/CycloneDX/cyclonedx-go"
)

// SBOM is the CycloneDX bill of materials of one Go binary, made from the build info the Go linker wrote
// into it (debug/buildinfo): the binary as the metadata component (its SHA-256, toolchain, main module
// and build settings as properties) and one library component per module it links, the replacement
// where a replace directive applied. version is the release's; created stamps the BOM, and the serial
// number derives from the binary's hash, so the same binary gives the same SBOM.
func SBOM(binary []byte, name, version string, created time.Time) (*cdx.BOM, error) {
	bi, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		return nil, fmt.Errorf("%s: read Go build info: %w", name, err)
	}
	sum := sha256.Sum256(binary)
	mainRef := purl(bi.Main.Path, version)
	if sub, ok := strings.CutPrefix(bi.Path, bi.Main.Path+"/"); ok {
		mainRef += "#" + sub // the package URL's subpath: the command inside the module
	}
	props := []cdx.Property{
		{Name: PropToolchain, Value: bi.GoVersion},
		{Name: PropModule, Value: bi.Main.Path},
		{Name: PropPackage, Value: bi.Path},
	}
	for _, s := range bi.Settings {
		props = append(props, cdx.Property{Name: PropBuild + s.Key, Value: s.Value})
	}
	main := cdx.Component{
		BOMRef:     mainRef,
		Type:       cdx.ComponentTypeApplication,
		Name:       name,
		Version:    version,
		PackageURL: mainRef,
		Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hex.EncodeToString(sum[:])}},
		Properties: &props,
	}
	var comps []cdx.Component
	var refs []string
	for _, d := range bi.Deps {
		m := d
		var mprops []cdx.Property
		if d.Replace != nil {
			m = d.Replace
			mprops = append(mprops, cdx.Property{Name: PropReplaces, Value: d.Path + "@" + d.Version})
		}
		if m.Sum != "" {
			mprops = append(mprops, cdx.Property{Name: PropSum, Value: m.Sum})
		}
		ref := purl(m.Path, m.Version)
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version, PackageURL: ref}
		if len(mprops) > 0 {
			c.Properties = &mprops
		}
		comps = append(comps, c)
		refs = append(refs, ref)
	}
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid.NewSHA1(uuid.NameSpaceOID, sum[:]).String()
	bom.Metadata = &cdx.Metadata{
		Timestamp: created.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{
			{Type: cdx.ComponentTypeApplication, Name: sbomTool},
			{Type: cdx.ComponentTypeLibrary, Name: sbomToolLib},
		}},
		Component: &main,
	}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{{Ref: mainRef, Dependencies: &refs}}
	return bom, nil
}

// WriteSBOM encodes bom as indented CycloneDX JSON.
func WriteSBOM(w io.Writer, bom *cdx.BOM) error {
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, sbomSpec); err != nil {
		return fmt.Errorf("encode CycloneDX: %w", err)
	}
	return nil
}

// ReadSBOM decodes a CycloneDX JSON SBOM.
func ReadSBOM(r io.Reader) (*cdx.BOM, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(r, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, fmt.Errorf("decode CycloneDX: %w", err)
	}
	return &bom, nil
}

// purl is the package URL of a Go module version: pkg:golang/<path>@<version>.
func purl(path, version string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return purlPrefix + strings.Join(segs, "/") + "@" + url.PathEscape(version)
}
