package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifySendsTheStateToTheSocket(t *testing.T) {
	// Abstract names are machine-wide: the pid keeps two runs apart.
	abstract := fmt.Sprintf("patrol-sdnotify-test-%d-%s", os.Getpid(), t.Name())
	for _, tc := range []struct {
		name, env, listen string
	}{
		{"path", "", ""},
		{"abstract", "@" + abstract, "\x00" + abstract},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, addr := tc.env, tc.listen
			if env == "" {
				env = filepath.Join(t.TempDir(), "notify.sock")
				addr = env
			}
			conn := listen(t, addr)
			t.Setenv("NOTIFY_SOCKET", env)
			sent, err := Notify(Ready)
			if err != nil || !sent {
				t.Fatalf("Notify = %v, %v; want true, nil", sent, err)
			}
			if got := receive(t, conn); got != Ready {
				t.Fatalf("systemd got %q, want %q", got, Ready)
			}
		})
	}
}

func TestNotifyWithoutSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("Notify = %v, %v; want false, nil", sent, err)
	}
}

func TestNotifyToAMissingSocketFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	if sent, err := Notify(Ready); sent || err == nil {
		t.Fatalf("Notify = %v, %v; want false and an error", sent, err)
	}
}
