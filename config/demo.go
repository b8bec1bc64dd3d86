package config

import (
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Demo credentials, printed at start-up of the demo. They only ever exist on
// loopback listeners.
const (
	DemoSecret = "demo-webhook-secret"
	DemoSource = "demo"
)

// DemoUsers are the demo's user names and passwords.
var DemoUsers = [][2]string{{"alice", "alice-demo-pw"}, {"bob", "bob-demo-pw"}}

// Demo returns the configuration used when serve runs without a config file:
// loopback listeners, two users, one webhook source. Environment overrides
// (DUEBRIDGE_*) still apply, so DUEBRIDGE_HTTP_LISTEN moves the demo too.
func Demo(dataDir string) (*Config, error) {
	c, err := Load("")
	if err != nil {
		return nil, err
	}
	if dataDir != "" {
		c.DataDir = dataDir
	}
	c.DataDir = filepath.Clean(c.DataDir)
	for _, up := range DemoUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(up[1]), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("hash demo password: %w", err)
		}
		c.Users = append(c.Users, User{
			Name: up[0], Email: up[0] + "@example.com", PasswordHash: string(h),
			Notify: NotifyAlarms, Location: time.UTC, DigestAt: 8 * time.Hour,
		})
	}
	c.Sources = append(c.Sources, Source{Name: DemoSource, Kind: KindGeneric, Secret: DemoSecret})
	c.Demo = true
	return c, nil
}
