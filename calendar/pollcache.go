package calendar

import (
	"hash/maphash"
	"sync"
)

// A phone's background poll is the same home PROPFIND every 15 minutes,
// with the same body on every iPhone. Two parts of its answer cost more
// than the rest together and rarely change: parsing the 38-property body,
// and the user's quota (a SUM over the user's own objects, one store
// transaction). These caches keep both; everything else is answered fresh.

// propBodyCache maps exact PROPFIND bodies to their parsed requests. iOS
// sends a handful of distinct bodies, so a small bound holds them all;
// when it is full, nothing new is added (an unusual body is just parsed).
type propBodyCache struct {
	mu sync.RWMutex
	m  map[string]propReq
}

const (
	propBodyCacheMax  = 64   // distinct bodies
	propBodyCacheSize = 4096 // bytes: larger bodies are not cached
)

func (c *propBodyCache) get(body []byte) (propReq, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	q, ok := c.m[string(body)]
	return q, ok
}

// put keeps q for body; q's slices must not be modified afterwards.
func (c *propBodyCache) put(body []byte, q propReq) {
	if len(body) > propBodyCacheSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]propReq{}
	}
	if len(c.m) < propBodyCacheMax {
		c.m[string(body)] = q
	}
}

// quotaCache keeps each user's quota (RFC 4331) tagged with the revisions
// of the user's writable lists when it was read and the limits in force.
// Own objects live only in writable lists, and every write to one
// advances its revision, so while those revisions and the limits are the
// same the usage is too. The quota is read after the collections in a
// request, so a cached figure is never older than the revisions it is
// tagged with. Bounded by quotaCacheMax users; when full, an arbitrary
// half is dropped.
type quotaCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	m    map[string]quotaEntry
}

// quotaCacheMax bounds the users kept: ~80 bytes each, so ~80 MiB at a
// million users polling.
const quotaCacheMax = 1 << 20

type quotaEntry struct {
	lists  uint64 // listsTag of the writable lists
	limits Limits
	q      quota
}

func newQuotaCache() *quotaCache {
	return &quotaCache{seed: maphash.MakeSeed(), m: map[string]quotaEntry{}}
}

// listsTag identifies the names and revisions of the writable lists.
func (c *quotaCache) listsTag(colls []Collection) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var n [8]byte
	for i := range colls {
		if !writable(colls[i]) {
			continue
		}
		h.WriteString(colls[i].Name)
		seq := uint64(colls[i].Seq)
		for j := range n {
			n[j] = byte(seq >> (8 * j))
		}
		h.Write(n[:])
	}
	return h.Sum64()
}

func (c *quotaCache) get(user string, lists uint64, l Limits) (quota, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	if !ok || e.lists != lists || e.limits != l {
		return quota{}, false
	}
	return e.q, true
}

func (c *quotaCache) put(user string, lists uint64, l Limits, q quota) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= quotaCacheMax {
		n := 0
		for k := range c.m { // map order is random: an arbitrary half
			if n >= quotaCacheMax/2 {
				break
			}
			delete(c.m, k)
			n++
		}
	}
	c.m[user] = quotaEntry{lists: lists, limits: l, q: q}
}
