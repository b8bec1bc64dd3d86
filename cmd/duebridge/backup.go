package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// storeOf returns the store dialect and source from --config, or from
// --data-dir alone (SQLite).
func storeOf(cfgPath, dataDir string) (dialect, source string, err error) {
	switch {
	case cfgPath != "" && dataDir != "":
		return "", "", errors.New("give --config or --data-dir, not both")
	case cfgPath != "":
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return "", "", err
		}
		return cfg.Store, cfg.StoreSource(), nil
	case dataDir != "":
		return store.SQLite, dataDir, nil
	}
	return "", "", errors.New("--config or --data-dir is required")
}

func backupCmd() *cobra.Command {
	var cfgPath, dataDir, out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent copy of the SQLite store while the server runs",
		Long: `Write a consistent copy of the SQLite store to --out (which must not exist),
while the server keeps serving: the copy holds every commit before the backup
began, so every webhook acknowledged by then. PostgreSQL stores are backed up
with pg_dump; this command then says how.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			dialect, source, err := storeOf(cfgPath, dataDir)
			if err != nil {
				return err
			}
			start := time.Now()
			if err := store.Backup(cmd.Context(), dialect, source, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s in %s\n", out, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML config file (its data_dir / store)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "SQLite data directory (instead of --config)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write (must not exist)")
	return cmd
}

func restoreCmd() *cobra.Command {
	var cfgPath, dataDir, from string
	var identityOnly bool
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup into a new data directory, as a new database for phones",
		Long: `Restore a backup made by 'duebridge backup' into a data directory that holds no
database yet (--data-dir, or the config's data_dir): an existing one, live or
stopped, is never overwritten. The restored database gets a new identity:
phones' CalDAV sync tokens are refused (valid-sync-token) so they sync in
full, and every IMAP mailbox gets a new UIDVALIDITY, so no UID is reused
under the UIDVALIDITY a phone knows.

--identity-only gives the configured database a new identity without copying
anything: run it, with duebridge stopped, after restoring PostgreSQL with
pg_restore or after copying a SQLite file by hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dialect, source, err := storeOf(cfgPath, dataDir)
			if err != nil {
				return err
			}
			now := time.Now()
			if identityOnly {
				if from != "" {
					return errors.New("--identity-only copies nothing: leave out --from")
				}
				st, err := store.Open(cmd.Context(), dialect, source, store.Options{})
				if err != nil {
					return err
				}
				err = store.NewIdentity(cmd.Context(), st, now)
				if cerr := st.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "new identity: phones will sync in full")
				return nil
			}
			if from == "" {
				return errors.New("--from is required (or --identity-only)")
			}
			if dialect != store.SQLite {
				return errors.New("restore copies SQLite backups; for PostgreSQL use pg_restore, then restore --identity-only")
			}
			if err := store.Restore(cmd.Context(), from, source, now); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s: phones will sync in full\n", from, source)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML config file (its data_dir / store)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "SQLite data directory to restore into (instead of --config)")
	cmd.Flags().StringVar(&from, "from", "", "backup file made by 'duebridge backup'")
	cmd.Flags().BoolVar(&identityOnly, "identity-only", false, "only give the configured database a new identity (after pg_restore or a manual copy)")
	return cmd
}
