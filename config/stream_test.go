package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

func TestStreamSources(t *testing.T) {
	c, err := loadYAML(t, `
sources:
  - name: ops
    kind: kafka
    secret: s3cret-s3cret
    stream:
      brokers: ["k1:9092", "k2:9092"]
      topics: [tasks]
      sasl: scram-sha-512
      username: u
      password: p
      ca_file: /etc/ssl/ca.pem
  - name: events
    kind: nats
    secret: s3cret-s3cret
    stream:
      url: nats://n1:4222
      stream: TASKS
      subjects: [tasks.>]
feeds:
  refresh: 30m
`)
	if err != nil {
		t.Fatal(err)
	}
	k, n := c.Sources[0].Stream, c.Sources[1].Stream
	if k.Group != "duebridge-ops" || !k.TLS || k.SASL != "scram-sha-512" || len(k.Brokers) != 2 {
		t.Errorf("kafka stream %+v", k)
	}
	if n.Durable != "duebridge-events" || n.Stream != "TASKS" || n.Subjects[0] != "tasks.>" {
		t.Errorf("nats stream %+v", n)
	}
	if c.Feeds.Refresh.String() != "30m0s" {
		t.Errorf("feeds.refresh %v", c.Feeds.Refresh)
	}

	for _, bad := range []struct{ yaml, key string }{
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret}", "sources[0].stream"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {topics: [t]}}", "sources[0].stream.brokers"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: [nohost], topics: [t]}}", "sources[0].stream.brokers[0]"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: ['k:1']}}", "sources[0].stream.topics"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: ['k:1'], topics: [t], sasl: gssapi}}", "sources[0].stream.sasl"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: ['k:1'], topics: [t], sasl: plain}}", "sources[0].stream.sasl"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: ['k:1'], topics: [t], stream: S}}", "sources[0].stream.stream"},
		{"sources:\n  - {name: a, kind: nats, secret: s3cret-s3cret, stream: {url: 'http://n:1', stream: S}}", "sources[0].stream.url"},
		{"sources:\n  - {name: a, kind: nats, secret: s3cret-s3cret, stream: {url: 'nats://n:1'}}", "sources[0].stream.stream"},
		{"sources:\n  - {name: a, kind: nats, secret: s3cret-s3cret, stream: {url: 'nats://n:1', stream: S, topics: [t]}}", "sources[0].stream.topics"},
		{"sources:\n  - {name: a, kind: generic, secret: s3cret-s3cret, stream: {url: 'nats://n:1'}}", "sources[0].stream"},
		{"sources:\n  - {name: a, kind: kafka, secret: s3cret-s3cret, stream: {brokers: ['k:1'], topics: [t], bogus: 1}}", "bogus"},
		{"feeds:\n  refresh: 5m", "feeds.refresh"},
		{"feeds:\n  refresh: soon", "feeds.refresh"},
	} {
		_, err := loadYAML(t, bad.yaml)
		if err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%s\n: error %v, want one naming %s", bad.yaml, err, bad.key)
		}
	}
}
