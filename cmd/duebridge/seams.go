package main

import (
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/setup"
	"github.com/duebridge/duebridge/stream"
	"github.com/duebridge/duebridge/webhook"
)

// The core implements the narrow interface each adapter declares; these
// assertions keep that true where the packages are wired together (bridge
// cannot name setup: setup imports bridge for its error sentinels).
// calendar.Backend and imapserver.Backend are asserted in bridge itself
// (bridge/caldav.go, bridge/mailbox.go), webhook's interfaces in webhook.
var _ setup.Core = (*bridge.Service)(nil)

// A stream record is a webhook body: webhook's sink feeds the core's Ingest
// (stream imports nothing of ours, so it cannot name either).
var _ stream.Sink = (*webhook.StreamSink)(nil)
