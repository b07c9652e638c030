// Command poweroff is the whole /init of the floor guest: it ends the VM
// the moment the kernel hands over, so a raw boot measures kernel and
// firmware only. Like hull's agent it reboots, which QEMU's -no-reboot turns
// into an exit; microvm has no ACPI to power off with.
package main

import "golang.org/x/sys/unix"

func main() {
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {} // PID 1 must not exit; the kernel would panic.
}
