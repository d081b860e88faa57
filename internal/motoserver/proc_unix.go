//go:build unix

package motoserver

import (
	"os/exec"
	"syscall"
)

// configure puts the server in a process group of its own, so that terminate reaches any
// process it starts, and (on Linux) has it killed if the test binary dies first.
func configure(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

// terminate asks the server's process group to exit.
func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill kills the server's process group.
func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
