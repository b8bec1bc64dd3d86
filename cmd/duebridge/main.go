// Command duebridge puts the tasks and deadlines of task systems onto iPhones
// through CalDAV (Calendar, Reminders) and IMAP (Mail).
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	rtdebug "runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/password"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "duebridge",
		Short:         "Tasks and deadlines from task systems on iPhones, through CalDAV and IMAP",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(serveCmd(), checkConfigCmd(), hashPasswordCmd(), versionCmd(), devCertCmd(), feedCmd(), devicesCmd())
	root.AddCommand(backupCmd(), restoreCmd(), healthcheckCmd(), ticketKeysCmd())
	return root
}

func serveCmd() *cobra.Command {
	var cfgPath, dataDir string
	var debug bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the CalDAV, IMAP and webhook servers",
		Long: `Run the CalDAV, IMAP and webhook servers.

Without --config, a demo set-up starts on loopback with two users and a demo
webhook source; the credentials are printed at start-up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := newLogger(os.Stderr, debug)
			var cfg *config.Config
			var err error
			if cfgPath != "" {
				cfg, err = config.Load(cfgPath)
				// Reading a large users list peaks at a few times what the
				// config keeps (the file's bytes, and the YAML node tree
				// when the list is not in block form: ~3 KB a user); hand
				// that back now rather than hold it as RSS.
				rtdebug.FreeOSMemory()
			} else {
				cfg, err = config.Demo(dataDir)
			}
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				logger.Warn(w)
			}
			if dataDir != "" {
				cfg.DataDir = dataDir
			}
			return serve(cmd.Context(), cfg, serveOptions{Logger: logger, Ready: printReady(os.Stdout, cfg)})
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML config file (default: demo set-up)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "override data_dir")
	cmd.Flags().BoolVar(&debug, "debug", false, "debug logging")
	return cmd
}

func checkConfigCmd() *cobra.Command {
	var cfgPath string
	var print bool
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a config file and exit non-zero if it is refused",
		Long: `Validate a config file (with its DUEBRIDGE_* environment overrides) and exit
non-zero if it is refused. --print also shows the effective value of every
key, secrets masked, and where it came from: default, file or env.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			// The TLS files are read as serve reads them at start (the
			// certificate and key must pair, the ticket key file must parse
			// and be private), so a refusal shows here, not at the restart.
			if _, err := newCertSource(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
				return fmt.Errorf("%s: tls: %w", cfgPath, err)
			}
			out := cmd.OutOrStdout()
			for _, w := range cfg.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if print {
				printEffective(out, cfg)
			}
			fmt.Fprintf(out, "%s: OK (%s, %s, store %s)\n", cfgPath,
				plural(len(cfg.Users), "user"), plural(len(cfg.Sources), "source"), cfg.Store)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML config file")
	cmd.Flags().BoolVar(&print, "print", false, "print the effective config (secrets masked) and where each value came from")
	return cmd
}

// printEffective prints one key per line: key, value, origin.
func printEffective(w io.Writer, cfg *config.Config) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range cfg.Effective() {
		if strings.HasPrefix(s.Key, "users[") || strings.HasPrefix(s.Key, "sources[") {
			tw.Flush() // long lines: keep them out of the columns
			fmt.Fprintf(w, "%s: %s (%s)\n", s.Key, s.Value, s.Origin)
			continue
		}
		origin := string(s.Origin)
		if s.Env != "" {
			origin += " " + s.Env
		}
		v := s.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t(%s)\n", s.Key, v, origin)
	}
	tw.Flush()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func hashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on stdin and print its argon2id hash for the config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if len(pw) < 8 {
				return errors.New("password too short (at least 8 characters)")
			}
			h, err := password.Hash(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
}

// readPassword reads one line; from a terminal, without echo.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		return string(b), err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// newLogger logs JSON unless stderr is a terminal.
func newLogger(w *os.File, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	if term.IsTerminal(int(w.Fd())) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readableDurations logs durations as "1s", not 1000000000 (JSON's default).
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
