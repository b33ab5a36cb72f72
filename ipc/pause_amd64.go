package ipc

// cpuRelax executes one PAUSE instruction (pause_amd64.s).
func cpuRelax()
