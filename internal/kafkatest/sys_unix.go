//go:build unix

package kafkatest

import "syscall"

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// signal sends sig to the broker's process group (the JVM is started as a group leader).
func (b *Broker) signal(sig syscall.Signal) {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	pid := b.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil {
		// The group may already be gone; fall back to the process itself.
		_ = syscall.Kill(pid, sig)
	}
}
