// Package testenv decides what a test does when a system tool it needs
// (php-fpm, chromium, h2spec, git...) is missing: on a developer's machine
// with only Go the test skips and names the package to install; under CI
// (SHOAL_REQUIRE_TOOLS=1, set by .ci/run after it installed them) a missing
// tool fails the test, so a skip can never pass for a green run.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireVar is the environment variable under which a missing tool fails
// the test instead of skipping it.
const RequireVar = "SHOAL_REQUIRE_TOOLS"

// LookPath returns the path of the program name, or skips the test (fails
// it under SHOAL_REQUIRE_TOOLS=1) with a message naming the apt package
// that provides it.
func LookPath(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Missing(t, name+" not found: apt-get install "+pkg)
	return ""
}

// Missing skips the test with why, or fails it when tools are required.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireVar) == "1" {
		t.Fatalf("%s (%s=1: required tools may not be missing)", why, RequireVar)
	}
	t.Skip(why)
}
