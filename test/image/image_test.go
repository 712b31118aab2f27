// Package image tests the project's container image: the Dockerfile's build
// context holds every package the binaries import, and `make image`
// assembles, without a container daemon, an image whose configuration,
// files and binaries are what the chart and the worker Deployments expect.
package image

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/test"
)

// manifest is one entry of a docker-archive's manifest.json.
type manifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// config is the part of an image configuration the tests read.
type config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Env        []string          `json:"Env"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// entry is a file of the image's merged layers.
type entry struct {
	hdr  *tar.Header
	data []byte
}

func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the three binaries and the image")
	}
	dir := t.TempDir()
	const version, commit = "v9.9.9-imagetest", "0123456789ab"
	cmd := exec.Command("make", "-s", "image", "IMAGE_DIR="+dir, "VERSION="+version, "COMMIT="+commit, "IMAGE_REPO=localhost/imagetest/sync-operator")
	cmd.Dir = test.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "sync-operator.tar")
	files := readArchive(t, archive)

	var mf []manifest
	if err := json.Unmarshal(files["manifest.json"], &mf); err != nil || len(mf) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	if want := "localhost/imagetest/sync-operator:" + version; len(mf[0].RepoTags) != 1 || mf[0].RepoTags[0] != want {
		t.Errorf("tags %v, want %s", mf[0].RepoTags, want)
	}
	var cfg config
	if err := json.Unmarshal(files[mf[0].Config], &cfg); err != nil {
		t.Fatalf("config %s: %v", mf[0].Config, err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"user", cfg.Config.User, "65532:65532"},
		{"entrypoint", strings.Join(cfg.Config.Entrypoint, " "), "/manager"},
		{"os/arch", cfg.OS + "/" + cfg.Architecture, "linux/amd64"},
		{"version label", cfg.Config.Labels["org.opencontainers.image.version"], version},
		{"commit label", cfg.Config.Labels["org.opencontainers.image.revision"], commit},
	} {
		if c.got != c.want {
			t.Errorf("image %s = %q, want %q", c.what, c.got, c.want)
		}
	}

	// The merged file system, layer over layer.
	fsys := map[string]entry{}
	for _, l := range mf[0].Layers {
		for name, e := range readLayer(t, files[l]) {
			fsys[name] = e
		}
	}
	if e, ok := fsys["tmp"]; !ok || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp is missing or not world-writable with the sticky bit: %+v", e.hdr)
	}
	if e := fsys["etc/passwd"]; !strings.Contains(string(e.data), ":65532:65532:") {
		t.Errorf("/etc/passwd has no entry for 65532: %q", e.data)
	}
	if e := fsys["etc/ssl/certs/ca-certificates.crt"]; !strings.Contains(string(e.data), "BEGIN CERTIFICATE") {
		t.Error("/etc/ssl/certs/ca-certificates.crt holds no certificate")
	}
	for _, bin := range []string{"manager", "gateway", "worker"} {
		e, ok := fsys[bin]
		if !ok || e.hdr.Mode&0o111 == 0 || e.hdr.Uid != 0 {
			t.Errorf("/%s is missing, not executable or not owned by root: %+v", bin, e.hdr)
			continue
		}
		exe := filepath.Join(t.TempDir(), bin)
		if err := os.WriteFile(exe, e.data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), bin+" "+version+" ("+commit) {
			t.Errorf("/%s --version: %v %q, want %s %s (%s...", bin, err, out, bin, version, commit)
		}
	}
	// The same binaries give the same image: fixed times and owners.
	again := filepath.Join(t.TempDir(), "again.tar")
	tool := exec.Command("go", "run", ".", "--bin-dir", dir, "--out", again, "--tag", "localhost/imagetest/sync-operator:"+version,
		"--version", version, "--commit", commit)
	tool.Dir = filepath.Join(test.RepoRoot(), "hack", "tools", "image")
	if out, err := tool.CombinedOutput(); err != nil {
		t.Fatalf("assembling again: %v\n%s", err, out)
	}
	if second := readArchive(t, again); second["manifest.json"] == nil || mf[0].Config != mustManifest(t, second["manifest.json"]).Config {
		t.Errorf("assembling the same binaries again gave another image config: %s, first %s", second["manifest.json"], files["manifest.json"])
	}
	if fi, err := os.Stat(archive); err == nil {
		t.Logf("image %s: %.1f MiB", archive, float64(fi.Size())/(1<<20))
	}
}

func mustManifest(t *testing.T, data []byte) manifest {
	t.Helper()
	var mf []manifest
	if err := json.Unmarshal(data, &mf); err != nil || len(mf) != 1 {
		t.Fatalf("manifest.json: %v %s", err, data)
	}
	return mf[0]
}

// readArchive returns the files of a tarball by name.
func readArchive(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = data
	}
}

// readLayer returns the entries of a gzip-compressed layer by clean path.
func readLayer(t *testing.T, data []byte) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	out := map[string]entry{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(path.Clean(h.Name), "/")] = entry{hdr: h, data: b}
	}
}
