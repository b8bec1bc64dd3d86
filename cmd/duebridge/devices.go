package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// devicesCmd lists and revokes device passwords (the ones /setup issues).
// It works on the store directly, so it works whether or not the server
// runs; a running server ends a revoked device's sessions within seconds
// (bridge.Service.Run watches the revocation log).
func devicesCmd() *cobra.Command {
	var cfgPath, user string
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List and revoke device passwords",
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "YAML config file (required)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List device passwords: user, ID, name, issued, last used",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd.Context(), cfgPath, func(svc *bridge.Service) error {
				devs, err := svc.Devices(cmd.Context(), user)
				if err != nil {
					return err
				}
				printDevices(cmd.OutOrStdout(), devs)
				return nil
			})
		},
	}
	list.Flags().StringVar(&user, "user", "", "only this user's devices")

	revoke := &cobra.Command{
		Use:   "revoke --user NAME ID...",
		Short: "Revoke device passwords; a running server closes the user's IMAP sessions",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			if user == "" {
				return errors.New("--user is required")
			}
			return withService(cmd.Context(), cfgPath, func(svc *bridge.Service) error {
				for _, id := range ids {
					err := svc.RevokeDevicePassword(cmd.Context(), user, id)
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("user %s has no device password %q (see duebridge devices list)", user, id)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "revoked %s of %s\n", id, user)
				}
				return nil
			})
		},
	}
	revoke.Flags().StringVar(&user, "user", "", "the device's user (required)")
	cmd.AddCommand(list, revoke)
	return cmd
}

// withService opens the config's store and runs fn with a service on it.
func withService(ctx context.Context, cfgPath string, fn func(*bridge.Service) error) error {
	if cfgPath == "" {
		return errors.New("--config is required")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, svc, err := openService(ctx, cfg, bridge.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(svc)
}

func printDevices(w io.Writer, devs []bridge.Device) {
	if len(devs) == 0 {
		fmt.Fprintln(w, "no device passwords")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tID\tNAME\tISSUED\tLAST USED")
	for _, d := range devs {
		used := "never"
		if !d.LastUsed.IsZero() {
			used = d.LastUsed.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\n", d.User, d.ID, d.Name, d.Created.UTC().Format(time.RFC3339), used)
	}
	tw.Flush()
}
