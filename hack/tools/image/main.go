// Command image assembles the project's container image without a container
// daemon, with go-containerregistry: an empty base, one layer with what the
// static binaries need at run time (CA certificates, /etc/passwd and
// /etc/group naming user 65532, a world-writable /tmp) and one layer with
// the binaries, run as USER 65532 with /manager as the entrypoint, the same
// layout as the Dockerfile's distroless image. It writes a docker-archive
// tarball (what `ctr images import` and `docker load` read). Every file has a
// fixed owner and modification time, so the same binaries give the same
// image digest.
//
//	go run . --bin-dir ../../../bin/image --out ../../../bin/image/sync-operator.tar \
//	    --tag localhost/serviceradar/sync-operator:dev --version dev --commit abc
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// uid is the user every container of the project runs as (the worker
// Deployments' and the chart's runAsUser).
const uid = 65532

// binaries are the image's entrypoints, from --bin-dir.
var binaries = []string{"manager", "gateway", "worker"}

func main() {
	binDir := flag.String("bin-dir", "bin/image", "folder holding the static manager, gateway and worker binaries")
	out := flag.String("out", "bin/image/sync-operator.tar", "docker-archive tarball to write")
	tag := flag.String("tag", "localhost/serviceradar/sync-operator:dev", "image reference recorded in the tarball")
	version := flag.String("version", "dev", "version label (org.opencontainers.image.version)")
	commit := flag.String("commit", "", "commit label (org.opencontainers.image.revision)")
	caFile := flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle installed as /etc/ssl/certs/ca-certificates.crt")
	flag.Parse()
	if err := build(*binDir, *out, *tag, *version, *commit, *caFile); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(binDir, out, tag, version, commit, caFile string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("--tag %q: %w", tag, err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading the CA bundle (install Debian's ca-certificates): %w", err)
	}
	base, err := layer([]file{
		{path: "etc/", mode: 0o755 | os.ModeDir},
		{path: "etc/ssl/", mode: 0o755 | os.ModeDir},
		{path: "etc/ssl/certs/", mode: 0o755 | os.ModeDir},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{path: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid))},
		{path: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid))},
		{path: "home/", mode: 0o755 | os.ModeDir},
		{path: "home/nonroot/", mode: 0o700 | os.ModeDir, owner: uid},
		{path: "tmp/", mode: 0o777 | os.ModeDir | os.ModeSticky},
	})
	if err != nil {
		return err
	}
	var bins []file
	for _, b := range binaries {
		data, err := os.ReadFile(filepath.Join(binDir, b))
		if err != nil {
			return fmt.Errorf("reading binary: %w", err)
		}
		bins = append(bins, file{path: b, mode: 0o755, data: data})
	}
	app, err := layer(bins)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return fmt.Errorf("adding layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	cfg := cf.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.User = fmt.Sprintf("%d:%d", uid, uid)
	cfg.Config.Entrypoint = []string{"/manager"}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "sync-operator",
		"org.opencontainers.image.source":   "https://github.com/serviceradar/sync-operator",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": commit,
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return fmt.Errorf("setting the image config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("creating the output folder: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	fmt.Printf("%s %s %s\n", out, ref.String(), digest)
	return nil
}

// file is one entry of a layer; owner is its uid and gid (0: root).
type file struct {
	path  string
	mode  os.FileMode
	owner int
	data  []byte
}

// layer builds an uncompressed-in-memory, gzip-on-write layer of files with
// fixed times and owners.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: int64(f.mode.Perm()), Uid: f.owner, Gid: f.owner, ModTime: epoch, Format: tar.FormatPAX}
		if f.mode&os.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if f.mode.IsDir() {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer: %w", err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}
	return l, nil
}
