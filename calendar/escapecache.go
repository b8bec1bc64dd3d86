package calendar

import (
	"container/list"
	"sync"
)

// escapeCache keeps the XML-escaped form of object bytes, keyed by ETag
// (a hash of the bytes, so equal keys mean equal bytes, across users too).
// Escaping every object on every multiget was a tenth of its cost; phones
// fetch the same objects again and again.
type escapeCache struct {
	mu    sync.Mutex
	max   int // bytes
	size  int
	items map[string]*list.Element
	order *list.List // front = most recently used
}

type escapeEntry struct {
	etag, escaped string
}

func newEscapeCache(maxBytes int) *escapeCache {
	return &escapeCache{max: maxBytes, items: map[string]*list.Element{}, order: list.New()}
}

// get returns the escaped data for an object, computing it on a miss.
func (c *escapeCache) get(etag string, data []byte) string {
	c.mu.Lock()
	if e, ok := c.items[etag]; ok {
		c.order.MoveToFront(e)
		s := e.Value.(*escapeEntry).escaped
		c.mu.Unlock()
		return s
	}
	c.mu.Unlock()
	s := string(appendEscaped(make([]byte, 0, len(data)+len(data)/16), data))
	if len(s) > c.max/16 {
		return s // not worth evicting others for
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[etag]; ok {
		return s
	}
	c.items[etag] = c.order.PushFront(&escapeEntry{etag: etag, escaped: s})
	c.size += len(s) + len(etag)
	for c.size > c.max {
		last := c.order.Back()
		ent := last.Value.(*escapeEntry)
		c.order.Remove(last)
		delete(c.items, ent.etag)
		c.size -= len(ent.escaped) + len(ent.etag)
	}
	return s
}
