// Package render turns task records into what phones read: iCalendar VTODOs
// and VEVENTs (with their alarms), notification and digest mails, the names
// and UIDs of collections and objects, and the urgency score that orders and
// marks them. It is pure — the same input gives the same bytes — and reads
// nothing but its arguments, so bridge can render inside a transaction and
// tests can check output without a store.
package render
