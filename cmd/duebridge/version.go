package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, the module version from the build info is used.
var version = "dev"

// buildInfo is what `duebridge version` reports.
type buildInfo struct {
	Version   string // release (v1.2.3), pseudo-version, or "dev"
	Revision  string // VCS commit, or "unknown" (built with -buildvcs=false, or outside a checkout)
	Modified  bool   // the working tree had uncommitted changes
	Time      string // commit time, "" if unknown
	GoVersion string
}

// readBuildInfo reads the build info Go embeds in every binary. CI builds
// with -buildvcs=false, so there is no vcs.* setting: the revision is then
// "unknown" rather than an empty string.
func readBuildInfo(ldflagsVersion string, bi *debug.BuildInfo, ok bool) buildInfo {
	out := buildInfo{Version: ldflagsVersion, Revision: "unknown"}
	if out.Version == "" {
		out.Version = "dev"
	}
	if !ok || bi == nil {
		return out
	}
	out.GoVersion = bi.GoVersion
	if out.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		out.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				out.Revision = s.Value
			}
		case "vcs.modified":
			out.Modified = s.Value == "true"
		case "vcs.time":
			out.Time = s.Value
		}
	}
	return out
}

func (b buildInfo) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "duebridge %s\n", b.Version)
	rev := b.Revision
	if b.Modified {
		rev += " (modified)"
	}
	fmt.Fprintf(&sb, "  revision: %s\n", rev)
	if b.Time != "" {
		fmt.Fprintf(&sb, "  commit time: %s\n", b.Time)
	}
	if b.GoVersion != "" {
		fmt.Fprintf(&sb, "  go: %s\n", b.GoVersion)
	}
	return sb.String()
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			bi, ok := debug.ReadBuildInfo()
			fmt.Fprint(cmd.OutOrStdout(), readBuildInfo(version, bi, ok))
		},
	}
}
