package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/duebridge/duebridge/tlsutil"
)

func devCertCmd() *cobra.Command {
	var hosts, out string
	cmd := &cobra.Command{
		Use:   "dev-cert --hosts NAME[,NAME...] --out DIR",
		Short: "Make a local CA and a server certificate for trying duebridge with a phone on a LAN",
		Long: `Make a local CA (ca.crt, ca.key) and a server certificate for the given host
names and IP addresses (server.crt, server.key) in DIR. An existing CA in DIR is
reused, so phones that already trust it need nothing new.

Point tls.cert_file/tls.key_file at server.crt/server.key and tls.ca_file at
ca.crt; the setup profile then carries the CA. On the iPhone, after installing
the profile, turn on full trust for the CA under Settings > General > About >
Certificate Trust Settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hosts == "" {
				return fmt.Errorf("--hosts is required (e.g. --hosts duebridge.lan,192.168.1.20)")
			}
			res, err := tlsutil.DevCert(strings.Split(hosts, ","), out, time.Time{})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if res.CAReused {
				fmt.Fprintf(w, "reused CA %s\n", res.CACertFile)
			} else {
				fmt.Fprintf(w, "new CA    %s (key %s)\n", res.CACertFile, res.CAKeyFile)
			}
			fmt.Fprintf(w, "CA SHA-256 fingerprint %s\n", tlsutil.Fingerprint(res.CA))
			var names []string
			names = append(names, res.Leaf.DNSNames...)
			for _, ip := range res.Leaf.IPAddresses {
				names = append(names, ip.String())
			}
			fmt.Fprintf(w, "server    %s (key %s) for %s, valid until %s\n", res.ServerCertFile, res.ServerKeyFile,
				strings.Join(names, ", "), res.Leaf.NotAfter.Format("2006-01-02"))
			fmt.Fprintf(w, "\nconfig:\n  tls:\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n", res.ServerCertFile, res.ServerKeyFile, res.CACertFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&hosts, "hosts", "", "comma-separated host names and IP addresses")
	cmd.Flags().StringVar(&out, "out", "./certs", "output directory")
	return cmd
}
