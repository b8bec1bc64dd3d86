package render

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"time"

	"github.com/duebridge/duebridge/config"
)

// Palette holds the colours lists and deadline calendars start with: iOS's
// own calendar colours, distinct from each other, opaque (#RRGGBBAA, as
// iOS writes them).
var Palette = []string{
	"#FF2968FF", // pink-red
	"#1BADF8FF", // blue
	"#63DA38FF", // green
	"#FF9500FF", // orange
	"#CC73E1FF", // purple
	"#FFCC00FF", // yellow
	"#A2845EFF", // brown
	"#5856D6FF", // indigo
	"#00C7BEFF", // teal
	"#8E8E93FF", // grey
}

// ProjectColor is the colour a project's collections start with: picked
// by a hash of the project name, so it depends neither on the order
// projects arrive in nor on the user, and survives a rebuilt store.
func ProjectColor(project string) int {
	h := sha256.Sum256([]byte(project))
	return int(binary.BigEndian.Uint32(h[:4]) % uint32(len(Palette)))
}

// IsTaskUID reports whether uid is the UID duebridge gives a task's VTODO
// or VEVENT (TodoUID, EventUID).
func IsTaskUID(uid string) bool {
	return strings.HasSuffix(uid, "@duebridge") && (strings.HasPrefix(uid, "task-") || strings.HasPrefix(uid, "deadline-"))
}

// Version names the rendering rules of stored objects. Change it with
// any change that renders existing tasks differently (it was raised for
// PRIORITY following iOS's marks, alarms on the reminder only, and
// collision-free list names); the bridge then re-renders stored objects
// at the next start (bridge.Service.StartRerender).
const Version = "2"

// UserLocation is the zone of a user's local times (UTC if unset).
func UserLocation(u *config.User) *time.Location {
	if u == nil || u.Location == nil {
		return time.UTC
	}
	return u.Location
}
