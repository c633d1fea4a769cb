package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/image"
)

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build Terrane's container image as an archive, without a registry or a container engine",
	}
	var out, tag, terrane, cni string
	build := &cobra.Command{
		Use:   "build --out FILE [--tag NAME:TAG]",
		Short: "Write the image (terrane and terrane-cni, static) as a docker-save archive",
		Long: `build writes Terrane's container image as a docker-save archive: one layer
holding /terrane (the entrypoint: server, agent, ctl) and /terrane-cni (which
the agent's DaemonSet copies to the host's CNI directory), a config and a
manifest with the tag. Load it with
  ctr -n k8s.io images import FILE       (containerd, e.g. on each node)
  docker load -i FILE
The binaries must be static (CGO_ENABLED=0): the image has nothing else.
scripts/image.sh builds them and runs this.`,
		Example: `  CGO_ENABLED=0 go build -o .build/image/ ./cmd/terrane ./cmd/terrane-cni
  .build/image/terrane image build --out terrane.tar --tag terrane:dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out: required, the archive to write (e.g. terrane.tar)")
			}
			if terrane == "" || cni == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				if terrane == "" {
					terrane = exe
				}
				if cni == "" {
					cni = filepath.Join(filepath.Dir(exe), "terrane-cni")
				}
			}
			o := image.Options{Tag: tag, Entrypoint: []string{"/terrane"}}
			for _, f := range []struct{ flag, src, dst string }{{"--terrane", terrane, "/terrane"}, {"--terrane-cni", cni, "/terrane-cni"}} {
				data, err := image.StaticBinary(f.src)
				if err != nil {
					return fmt.Errorf("%s: %w", f.flag, err)
				}
				o.Files = append(o.Files, image.File{Path: f.dst, Mode: 0o755, Data: data})
			}
			var buf bytes.Buffer
			if err := image.Write(&buf, o); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: image %s, %d MiB\n", out, tag, buf.Len()>>20)
			return nil
		},
	}
	build.Flags().StringVar(&out, "out", "", "the archive to write")
	build.Flags().StringVar(&tag, "tag", "terrane:"+version, "the image's name:tag")
	build.Flags().StringVar(&terrane, "terrane", "", "the static terrane binary (default: this one)")
	build.Flags().StringVar(&cni, "terrane-cni", "", "the static terrane-cni binary (default: next to this one)")
	cmd.AddCommand(build)
	return cmd
}
