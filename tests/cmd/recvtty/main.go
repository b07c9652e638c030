// recvtty is a test helper: it listens on a console socket, receives the pty
// master a runtime sends there (as runc's recvtty does), types its -input
// into it, and copies what the terminal prints to stdout until EOF or
// -timeout.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	socket := flag.String("socket", "", "console socket path to listen on")
	input := flag.String("input", "", "text typed into the terminal once received")
	delay := flag.Duration("delay", 500*time.Millisecond, "wait before typing")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after")
	ready := flag.String("ready", "", "file created once listening")
	flag.Parse()
	if err := run(*socket, *input, *delay, *timeout, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "recvtty:", err)
		os.Exit(1)
	}
}

func run(socket, input string, delay, timeout time.Duration, ready string) error {
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	defer l.Close()
	if ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			return err
		}
	}
	time.AfterFunc(timeout, func() {
		fmt.Fprintln(os.Stderr, "recvtty: timeout")
		os.Exit(2)
	})
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	uc := conn.(*net.UnixConn)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("no fd received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("no fd received: %v", err)
	}
	master := os.NewFile(uintptr(fds[0]), "pty-master")
	if input != "" {
		go func() {
			time.Sleep(delay)
			master.Write([]byte(input))
		}()
	}
	_, err = io.Copy(os.Stdout, master)
	if err != nil && !isEIO(err) {
		return err
	}
	return nil
}

func isEIO(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == unix.EIO
}
