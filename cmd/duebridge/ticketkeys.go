package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/duebridge/duebridge/tlsutil"
)

func ticketKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ticket-keys",
		Short: "Manage the TLS session ticket key file (tls.ticket_keys_file)",
		Args:  cobra.NoArgs,
	}
	var file string
	var keep int
	rotate := &cobra.Command{
		Use:   "rotate --file FILE [--keep N]",
		Short: "Put a new session ticket key first in FILE (creating it), keeping at most N older keys",
		Long: `Put a new random session ticket key first in FILE, keeping at most --keep of
the keys already there, and write the file atomically with mode 0600. A missing
FILE is created with one key. Run it from cron (e.g. every 6 hours); servers
with tls.ticket_keys_file: FILE pick the new key up within 5 seconds: tickets
they issue from then on use it, and tickets sealed with a kept key still
resume. Replicas must all read the same keys: put FILE on shared storage, or
copy it to every replica (the rotation's first key must reach them all before
an old key is dropped, which --keep 1 or more leaves time for).

The keys seal TLS 1.3 tickets only; a TLS 1.2 session never resumes from them.
Comments in an existing FILE are not kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--file is required")
			}
			ids, err := tlsutil.RotateTicketKeyFile(file, keep)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: new key %08x seals tickets; %s in the file\n",
				file, ids[0], plural(len(ids), "key"))
			return nil
		},
	}
	rotate.Flags().StringVar(&file, "file", "", "the ticket key file (tls.ticket_keys_file)")
	rotate.Flags().IntVar(&keep, "keep", 3, "older keys kept to open existing tickets")
	cmd.AddCommand(rotate)
	return cmd
}
