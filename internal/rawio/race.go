//go:build race

package rawio

import "syscall"

// The race detector learns that a write happens before the read that
// gets its bytes from the annotations in package syscall's Read and
// Write, which raw calls skip: under it, each raw write is preceded by
// an empty syscall.Write (a release) and each read followed by an empty
// syscall.Read (an acquire). Only race builds pay for them.

func raceReleaseIO(fd uintptr) { syscall.Write(int(fd), nil) }
func raceAcquireIO(fd uintptr) { syscall.Read(int(fd), nil) }
