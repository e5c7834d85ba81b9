//go:build linux || darwin || freebsd || openbsd

package badgerstore

import "syscall"

// freeSpace returns the bytes an unprivileged process may still write on
// the filesystem holding dir.
func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
