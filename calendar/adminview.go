package calendar

import "context"

// SyncReport is what GET /admin/sync serves as JSON: per user, the
// collections' current revisions and each device's last poll and sync.
type SyncReport = syncReport

// SyncReport builds the sync health report of the given users for an
// in-process reader (the admin page), without a second copy of the data.
// The caller decides which users it may see.
func (h *Handler) SyncReport(ctx context.Context, users []string) (*SyncReport, error) {
	return h.health.report(ctx, h.be, users)
}
