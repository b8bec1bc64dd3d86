package main

import (
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/setup"
)

// The core implements the narrow interface each adapter declares; these
// assertions keep that true where the packages are wired together (bridge
// cannot name setup: setup imports bridge for its error sentinels).
var _ setup.Core = (*bridge.Service)(nil)
