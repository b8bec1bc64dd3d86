package calendar

import (
	"container/list"
	"sync"
)

// objectCache keeps the objects multiget served, per collection, tagged with
// the collection's revision (its ctag) at the time they were read. Every
// change to an object advances that revision in the same transaction, so a
// reader that sees the same revision in its own snapshot may use the cached
// bytes; any other revision drops the collection's entry. Reading 100 object
// rows was most of a multiget's server time.
type objectCache struct {
	mu    sync.Mutex
	max   int // bytes of object data
	size  int
	colls map[[2]string]*list.Element
	lru   *list.List // of *collEntry, front = most recent
}

type collEntry struct {
	key  [2]string
	seq  int64
	objs map[string]*Object
	size int
}

func newObjectCache(maxBytes int) *objectCache {
	return &objectCache{max: maxBytes, colls: map[[2]string]*list.Element{}, lru: list.New()}
}

// lookup returns, aligned with names, the objects cached for a collection
// at seq (nil where it has none), and the names it does not have.
func (c *objectCache) lookup(user, coll string, seq int64, names []string) ([]*Object, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.colls[[2]string{user, coll}]
	if !ok || el.Value.(*collEntry).seq != seq {
		return make([]*Object, len(names)), names
	}
	c.lru.MoveToFront(el)
	e := el.Value.(*collEntry)
	found := make([]*Object, len(names))
	var missing []string
	for i, n := range names {
		if o, ok := e.objs[n]; ok {
			found[i] = o
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing
}

// add stores objects read in a snapshot where the collection was at seq.
// Objects must not be modified afterwards: readers share them.
func (c *objectCache) add(user, coll string, seq int64, objs []Object) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{user, coll}
	el, ok := c.colls[key]
	var e *collEntry
	switch {
	case ok && el.Value.(*collEntry).seq == seq:
		e = el.Value.(*collEntry)
		c.lru.MoveToFront(el)
	case ok && el.Value.(*collEntry).seq > seq:
		return // a reader with a newer snapshot got there first
	default:
		if ok {
			c.drop(el)
		}
		e = &collEntry{key: key, seq: seq, objs: map[string]*Object{}}
		c.colls[key] = c.lru.PushFront(e)
	}
	for i := range objs {
		o := &objs[i]
		if _, dup := e.objs[o.Name]; dup || len(o.Data) > c.max/64 {
			continue
		}
		e.objs[o.Name] = o
		e.size += len(o.Data)
		c.size += len(o.Data)
	}
	for c.size > c.max && c.lru.Len() > 0 {
		c.drop(c.lru.Back())
	}
}

func (c *objectCache) drop(el *list.Element) {
	e := el.Value.(*collEntry)
	c.lru.Remove(el)
	delete(c.colls, e.key)
	c.size -= e.size
}
