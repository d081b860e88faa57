package motoserver

import "syscall"

// setParentDeathSignal has the kernel kill the server when the test binary exits without
// stopping it (a crash, or a package without Main in TestMain). Linux sends it when the thread
// that started the server ends; Go ends threads only after runtime.LockOSThread, which nothing
// here uses.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
