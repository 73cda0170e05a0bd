package spec

import (
	"errors"
	"fmt"
)

// maxIDLen bounds container IDs: they become file and database key names.
const maxIDLen = 1024

// ValidateID checks a container ID the way runc does: letters, digits, '_', '+', '-' and '.', not "." or "..",
// at most 1024 bytes. IDs end up in paths, so anything else is refused.
func ValidateID(id string) error {
	switch {
	case id == "":
		return errors.New("container id: must not be empty")
	case len(id) > maxIDLen:
		return fmt.Errorf("container id: longer than %d bytes", maxIDLen)
	case id == "." || id == "..":
		return fmt.Errorf("container id %q: not allowed", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '+' || c == '-' || c == '.') {
			return fmt.Errorf("container id %q: invalid character %q (allowed: letters, digits, _ + - .)", id, c)
		}
	}
	return nil
}
