package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// feedCmd issues and revokes calendar feed URLs. It writes to the store
// directly, so it works while the server runs (SQLite WAL or PostgreSQL).
func feedCmd() *cobra.Command {
	var cfgPath, user, project string
	var revoke bool
	cmd := &cobra.Command{
		Use:   "feed-url",
		Short: "Issue (or --revoke) a user's secret calendar feed URL",
		Long: `Issue a user's secret calendar feed URL, /feeds/<token>.ics, for Google
Calendar, Outlook or any app that subscribes to an iCalendar URL. Issuing
again renews it: the previous URL stops working. --revoke turns it off.
The URL is printed once; the server keeps only a keyed hash of its token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" || user == "" {
				return errors.New("--config and --user are required")
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			return feedURL(cmd, cfg, user, project, revoke)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML config file")
	cmd.Flags().StringVarP(&user, "user", "u", "", "the user whose deadlines the feed shows")
	cmd.Flags().StringVar(&project, "project", "", "print the URL of one project's deadlines only")
	cmd.Flags().BoolVar(&revoke, "revoke", false, "revoke the user's feed URL instead")
	return cmd
}

func feedURL(cmd *cobra.Command, cfg *config.Config, user, project string, revoke bool) error {
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, svc, err := openService(ctx, cfg, bridge.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	out := cmd.OutOrStdout()
	if revoke {
		ok, err := svc.RevokeFeedToken(ctx, user)
		if err != nil {
			return err
		}
		if ok {
			fmt.Fprintf(out, "revoked %s's feed URL\n", user)
		} else {
			fmt.Fprintf(out, "%s had no feed URL\n", user)
		}
		return nil
	}
	tok, err := svc.IssueFeedToken(ctx, user)
	if err != nil {
		return err
	}
	u := *cfg.HTTP.PublicURL
	u.Path = "/feeds/" + tok + ".ics"
	if project != "" {
		u.RawQuery = url.Values{"project": {project}}.Encode()
	}
	fmt.Fprintln(out, u.String())
	u.Scheme = "webcal"
	fmt.Fprintf(out, "%s\n(the previous feed URL of %s, if any, no longer works)\n", u.String(), user)
	return nil
}
