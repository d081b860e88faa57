//go:build !unix

package motoserver

import "os/exec"

func configure(*exec.Cmd) {}

// terminate stops the server; without Unix signals that is a kill.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// kill kills the server.
func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
