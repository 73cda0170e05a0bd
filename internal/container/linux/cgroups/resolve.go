package cgroups

import "path"

// Resolve turns linux.cgroupsPath into the path New takes.
//
//   - "" → "/knast/<id>".
//   - An absolute path is kept (cleaned): it names the same cgroup below every hierarchy's mountpoint.
//   - A relative path is cleaned so that ".." cannot climb out, and stays relative: like runc's
//     cgroupfs driver, New places it below knast's own cgroup on each v1 hierarchy and below the
//     parent of knast's own cgroup on cgroup2 (a cgroup2 cgroup holding processes cannot delegate
//     controllers to children).
//
// A path that cleans to the root ("/", ".", "..") would make the container share the host's root
// cgroup, which Destroy cannot remove: it is treated as "" instead. systemd's "slice:prefix:name"
// form has no meaning without systemd and is taken literally, as runc's cgroupfs driver does.
func Resolve(cgroupsPath, id string) string {
	p := cleanPath(cgroupsPath)
	if p == "" || p == "/" || p == "." {
		return path.Join("/knast", cleanPath(id))
	}
	return p
}

// cleanPath cleans p lexically; a relative p is cleaned as if rooted so that leading ".." vanish.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return "."
	}
	return c[1:]
}
