package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeProgramsBuild builds every complete program in the README (a
// Go block starting with "package main") as a user who copies it would:
// in a module of its own that requires kvsession, outside this workspace.
// The quick start of each adapter must be among them, so a README that
// drifts from the API fails here, not in a new user's first minute. It
// lives in this module because the playground's go.mod already requires
// every adapter, Fiber's included.
func TestReadmeProgramsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs: not with -short")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var programs []string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.HasPrefix(m[1], "package main\n") {
			programs = append(programs, m[1])
		}
	}
	for _, adapter := range []string{"kvfasthttp", "kvhttp", "kvfiber"} {
		found := false
		for _, p := range programs {
			found = found || strings.Contains(p, `"github.com/kvsession/kvsession/`+adapter+`"`)
		}
		if !found {
			t.Errorf("the README has no complete program using %s: its quick start is missing or not a whole program", adapter)
		}
	}

	// The module a user would write: this one's requirements (and go.sum),
	// with the replacements pointing at this checkout.
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gosum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	mod := strings.Replace(string(gomod), "module github.com/kvsession/kvsession/examples/playground", "module readmecheck", 1)
	mod = strings.ReplaceAll(mod, "=> ../../kvfiber", "=> "+filepath.Join(root, "kvfiber"))
	mod = strings.ReplaceAll(mod, "=> ../..", "=> "+root)
	for i, p := range programs {
		t.Run(strconv.Itoa(i+1), func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string]string{"go.mod": mod, "go.sum": string(gosum), "main.go": p} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("go", "vet", ".")
			cmd.Dir = dir
			// Offline, from the module cache this module's own build filled.
			cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("README program %d does not build: %v\n%s\n--- program:\n%s", i+1, err, out, p)
			}
		})
	}
}
