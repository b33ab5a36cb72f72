#include "textflag.h"

// func cpuRelax()
// PAUSE tells the core this is a spin-wait loop: it saves power, yields the
// pipeline to an SMT sibling and avoids a memory-order mis-speculation flush
// when the awaited cache line finally changes.
TEXT ·cpuRelax(SB), NOSPLIT|NOFRAME, $0-0
	PAUSE
	RET
