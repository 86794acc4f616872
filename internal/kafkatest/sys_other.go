//go:build !unix

package kafkatest

import "syscall"

type sysSignal int

const (
	sigTerm sysSignal = iota
	sigKill
)

// signal has no process groups or SIGTERM here: both signals kill the process.
func (b *Broker) signal(sysSignal) {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
	}
}

func sysProcAttr() *syscall.SysProcAttr { return nil }
