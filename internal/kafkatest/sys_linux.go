//go:build linux

package kafkatest

import "syscall"

// sysProcAttr puts the JVM in its own process group and has the kernel SIGKILL it if the
// test binary dies without running cleanups (e.g. go test -timeout panics).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
