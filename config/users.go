package config

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// The users list is most of a large config file: at 100,000 users, viper's
// generic maps and mapstructure's reflection over them cost about a third
// of Load's CPU and most of its allocations. splitUsers decodes that list
// straight from the YAML node tree into rawUser when every entry is written
// in the plain form (the keys rawUser names, in lower case, once each;
// quoted or plain strings where strings go, true/false where booleans go;
// no anchors, aliases, tags or empty blocks), and hands viper the rest of
// the document. Anything else makes it decline, and Load reads the whole
// file through viper as before, so weak typing, key folding and every
// error text stay viper's and mapstructure's. TestFastUsersMatchViper
// checks that both ways give the same result.

// fastUsers switches the direct decoding; tests turn it off to compare.
var fastUsers = true

// fastSplit decodes the users list without viper: by the scanner if it
// can (no node tree of the whole file), else from the node tree.
func fastSplit(b []byte) (map[string]any, []rawUser, bool) {
	if !fastUsers {
		return nil, nil, false
	}
	if rest, users, ok := scanUsersIf(b); ok {
		return rest, users, true
	}
	return splitUsers(b)
}

// splitUsers parses b; ok is false when the document or its users list is
// not in the plain form described above.
func splitUsers(b []byte) (rest map[string]any, users []rawUser, ok bool) {
	top, key, list, ok := splitTop(b)
	if !ok || key == nil || list.Kind != yaml.SequenceNode || !plain(list) || len(list.Content) == 0 {
		return nil, nil, false
	}
	users = make([]rawUser, len(list.Content))
	for i, n := range list.Content {
		if !decodeUser(n, &users[i]) {
			return nil, nil, false
		}
	}
	if rest, ok = restMap(top, key); !ok {
		return nil, nil, false
	}
	return rest, users, true
}

// splitTop parses b into its top-level mapping and finds the users entry in
// it (key nil if there is none). ok is false unless the document is one
// block mapping of plain string keys with "users" at most once, in that
// spelling.
func splitTop(b []byte) (top, key, list *yaml.Node, ok bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil, nil, false
	}
	top = doc.Content[0]
	if top.Kind != yaml.MappingNode || !plain(top) || top.Style&yaml.FlowStyle != 0 {
		return nil, nil, nil, false
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k := top.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || !plain(k) {
			return nil, nil, nil, false // a merge key, a non-string key
		}
		if strings.EqualFold(k.Value, "users") {
			if k.Value != "users" || key != nil {
				return nil, nil, nil, false // "Users:" or twice: viper's folding decides
			}
			key, list = k, top.Content[i+1]
		}
	}
	return top, key, list, true
}

// restMap decodes top without the users entry as yaml.Unmarshal into a map
// would (what viper's codec does); it may fail (a duplicate key): then
// viper reports it.
func restMap(top, key *yaml.Node) (map[string]any, bool) {
	others := make([]*yaml.Node, 0, len(top.Content))
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i] != key {
			others = append(others, top.Content[i], top.Content[i+1])
		}
	}
	restNode := *top
	restNode.Content = others
	rest := map[string]any{}
	if err := restNode.Decode(&rest); err != nil {
		return nil, false
	}
	return rest, true
}

// plain: no anchor, alias or explicit tag, which viper would resolve.
func plain(n *yaml.Node) bool {
	return n.Kind != yaml.AliasNode && n.Anchor == "" && n.Style&yaml.TaggedStyle == 0
}

// plainMap is a non-empty mapping whose keys are plain, lower-case strings,
// each once; it calls f for every pair and fails as soon as f does.
func plainMap(n *yaml.Node, f func(key string, v *yaml.Node) bool) bool {
	if n.Kind != yaml.MappingNode || !plain(n) || len(n.Content) == 0 {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || !plain(k) || k.Value != strings.ToLower(k.Value) {
			return false
		}
		for j := 0; j < i; j += 2 {
			if n.Content[j].Value == k.Value {
				return false
			}
		}
		if !f(k.Value, n.Content[i+1]) {
			return false
		}
	}
	return true
}

func str(n *yaml.Node, dst *string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" || !plain(n) {
		return false
	}
	*dst = n.Value
	return true
}

func boolean(n *yaml.Node, dst *bool) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || !plain(n) || (n.Value != "true" && n.Value != "false") {
		return false
	}
	*dst = n.Value == "true"
	return true
}

func strs(n *yaml.Node, dst *[]string) bool {
	if n.Kind != yaml.SequenceNode || !plain(n) || len(n.Content) == 0 {
		return false
	}
	out := make([]string, len(n.Content))
	for i, e := range n.Content {
		if !str(e, &out[i]) {
			return false
		}
	}
	*dst = out
	return true
}

func decodeUser(n *yaml.Node, u *rawUser) bool {
	return plainMap(n, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			return str(v, &u.Name)
		case "email":
			return str(v, &u.Email)
		case "password_hash":
			return str(v, &u.PasswordHash)
		case "password":
			return str(v, &u.Password)
		case "notify":
			return str(v, &u.Notify)
		case "timezone":
			return str(v, &u.TimeZone)
		case "digest_at":
			return str(v, &u.DigestAt)
		case "digest":
			return boolean(v, &u.Digest)
		case "admin":
			return boolean(v, &u.Admin)
		case "lead_times":
			return strs(v, &u.LeadTimes)
		case "app_passwords":
			if v.Kind != yaml.SequenceNode || !plain(v) || len(v.Content) == 0 {
				return false
			}
			u.AppPasswords = make([]rawAppPassword, len(v.Content))
			for i, e := range v.Content {
				ap := &u.AppPasswords[i]
				if !plainMap(e, func(key string, v *yaml.Node) bool {
					switch key {
					case "name":
						return str(v, &ap.Name)
					case "hash":
						return str(v, &ap.Hash)
					}
					return false
				}) {
					return false
				}
			}
			return true
		case "quiet_hours":
			q := &rawQuietHours{}
			u.QuietHours = q
			return plainMap(v, func(key string, v *yaml.Node) bool {
				switch key {
				case "start":
					return str(v, &q.Start)
				case "end":
					return str(v, &q.End)
				case "allow_urgent":
					return boolean(v, &q.AllowUrgent)
				}
				return false
			})
		case "identities":
			m := map[string]string{}
			u.Identities = m
			return plainMap(v, func(key string, v *yaml.Node) bool {
				var s string
				if !str(v, &s) {
					return false
				}
				m[key] = s
				return true
			})
		}
		return false // unknown: viper names it
	})
}
