package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// barrier lines up several load-tool processes (bench/idle100k.sh runs one
// per replica, each with its own source addresses): after opening its idle
// connections a process writes its count to ReadyFile and waits until
// GoFile exists, so every measured phase runs with all connections of the
// node open.
type barrier struct {
	ReadyFile string
	GoFile    string
}

// idleBarrier is set once by main from --idle-ready and --idle-go before
// any connection is opened.
var idleBarrier barrier

// wait reports open connections and waits for the go signal (bounded by
// ctx, i.e. --max-time). A zero barrier returns at once.
func (b barrier) wait(ctx context.Context, open int) error {
	if b.ReadyFile != "" {
		tmp := b.ReadyFile + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d\n", open), 0o644); err != nil {
			return fmt.Errorf("--idle-ready: %w", err)
		}
		if err := os.Rename(tmp, b.ReadyFile); err != nil {
			return fmt.Errorf("--idle-ready: %w", err)
		}
	}
	if b.GoFile == "" {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(b.GoFile); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for --idle-go %s: %w", b.GoFile, ctx.Err())
		case <-t.C:
		}
	}
}
