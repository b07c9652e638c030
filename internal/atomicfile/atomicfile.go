// Package atomicfile replaces files so that a reader, or a crash, sees the
// old contents or the new, never a part: state, PID files, published
// sandbox info and benchmark reports are all read by others while written.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, with mode perm: it writes a temporary file
// beside path, syncs it and renames it over path.
func Write(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	// After the rename there is nothing left to remove.
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data, perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writeSynced(f *os.File, data []byte, perm os.FileMode) error {
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
