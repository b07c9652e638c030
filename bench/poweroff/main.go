// Command poweroff is the whole /init of the floor guest: it powers the VM
// off the moment the kernel hands over, so a raw boot measures kernel and
// firmware only.
package main

import "golang.org/x/sys/unix"

func main() {
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit; the kernel would panic.
}
