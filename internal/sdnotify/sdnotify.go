// Package sdnotify tells systemd how a service stands, for units of
// Type=notify: READY=1 once the service is up, STOPPING=1 when it begins
// to stop. It speaks the datagram protocol of sd_notify(3) directly.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// States sent by Patrol.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket named by $NOTIFY_SOCKET. It reports
// false, and does nothing, when the variable is unset: the process was not
// started by systemd with Type=notify.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notify systemd: %w", err)
	}
	return true, nil
}
