package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DevicePassword is one device's own password, as stored: only a keyed hash
// of the secret (bridge/devices.go makes and checks it), never the secret.
type DevicePassword struct {
	// ID is the non-secret part embedded in the password; it finds the row.
	ID   string
	User string
	// Name is what the user called the device ("Anna's iPhone").
	Name     string
	Hash     []byte
	Created  time.Time
	LastUsed time.Time // zero: never used (as last flushed)
}

// DeviceRevocation is one revoked device password, kept so that every
// process sharing the database can end that user's sessions (a CLI revoke
// reaches a running server through it).
type DeviceRevocation struct {
	Seq      int64
	User     string
	DeviceID string
	Revoked  time.Time
}

// DeviceTx keeps device passwords.
type DeviceTx interface {
	// AddDevicePassword stores a new device password.
	AddDevicePassword(d *DevicePassword) error
	// DevicePassword returns the row with that ID, ErrNotFound if none.
	DevicePassword(id string) (*DevicePassword, error)
	// DevicePasswords lists a user's device passwords ("" = every user's),
	// by user, then oldest first.
	DevicePasswords(user string) ([]DevicePassword, error)
	// RevokeDevicePassword deletes the user's device password and records
	// the revocation; ErrNotFound if the user has none with that ID.
	RevokeDevicePassword(user, id string) error
	// TouchDevicePasswords raises last use of each device to the given
	// time (never lowers it); IDs that are gone are skipped.
	TouchDevicePasswords(used map[string]time.Time) error
	// DeviceRevocations returns revocations after seq, oldest first, at
	// most limit.
	DeviceRevocations(after int64, limit int) ([]DeviceRevocation, error)
	// LastDeviceRevocation returns the newest revocation's Seq (0: none).
	LastDeviceRevocation() (int64, error)
}

const deviceCols = `id, username, name, hash, created, last_used`

func scanDevice(sc interface{ Scan(...any) error }) (*DevicePassword, error) {
	var d DevicePassword
	var created, used int64
	if err := sc.Scan(&d.ID, &d.User, &d.Name, &d.Hash, &created, &used); err != nil {
		return nil, err
	}
	d.Created, d.LastUsed = fromNanos(created), fromNanos(used)
	return &d, nil
}

func (tx *sqlTx) AddDevicePassword(d *DevicePassword) error {
	_, err := tx.exec(`INSERT INTO device_passwords (`+deviceCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		d.ID, d.User, d.Name, d.Hash, nanos(d.Created), nanos(d.LastUsed))
	if err != nil {
		return fmt.Errorf("add device password of %s: %w", d.User, err)
	}
	return nil
}

func (tx *sqlTx) DevicePassword(id string) (*DevicePassword, error) {
	d, err := scanDevice(tx.queryRow(`SELECT `+deviceCols+` FROM device_passwords WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read device password: %w", err)
	}
	return d, nil
}

func (tx *sqlTx) DevicePasswords(user string) ([]DevicePassword, error) {
	q := `SELECT ` + deviceCols + ` FROM device_passwords`
	var args []any
	if user != "" {
		q += ` WHERE username = ?`
		args = append(args, user)
	}
	rows, err := tx.query(q+` ORDER BY username, created, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list device passwords: %w", err)
	}
	defer rows.Close()
	var out []DevicePassword
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list device passwords: %w", err)
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func (tx *sqlTx) RevokeDevicePassword(user, id string) error {
	res, err := tx.exec(`DELETE FROM device_passwords WHERE username = ? AND id = ?`, user, id)
	if err != nil {
		return fmt.Errorf("revoke device password: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke device password: %w", err)
	} else if n == 0 {
		return ErrNotFound
	}
	if _, err := tx.exec(`INSERT INTO device_revocations (username, device_id, revoked) VALUES (?, ?, ?)`,
		user, id, nanos(tx.now)); err != nil {
		return fmt.Errorf("record device revocation: %w", err)
	}
	// Announced so that other processes end the user's sessions at once;
	// the revocation log above is what they replay after a missed one.
	tx.Emit(Event{Kind: EventDevice, User: user})
	return nil
}

func (tx *sqlTx) TouchDevicePasswords(used map[string]time.Time) error {
	for id, t := range used {
		if _, err := tx.exec(`UPDATE device_passwords SET last_used = ? WHERE id = ? AND last_used < ?`,
			nanos(t), id, nanos(t)); err != nil {
			return fmt.Errorf("record device last use: %w", err)
		}
	}
	return nil
}

func (tx *sqlTx) DeviceRevocations(after int64, limit int) ([]DeviceRevocation, error) {
	rows, err := tx.query(`SELECT seq, username, device_id, revoked FROM device_revocations WHERE seq > ? ORDER BY seq LIMIT ?`,
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("read device revocations: %w", err)
	}
	defer rows.Close()
	var out []DeviceRevocation
	for rows.Next() {
		var r DeviceRevocation
		var at int64
		if err := rows.Scan(&r.Seq, &r.User, &r.DeviceID, &at); err != nil {
			return nil, fmt.Errorf("read device revocations: %w", err)
		}
		r.Revoked = fromNanos(at)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (tx *sqlTx) LastDeviceRevocation() (int64, error) {
	var seq sql.NullInt64
	if err := tx.queryRow(`SELECT MAX(seq) FROM device_revocations`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read device revocations: %w", err)
	}
	return seq.Int64, nil
}
