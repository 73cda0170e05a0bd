package container

import (
	"os"
	"strings"
	"testing"
)

// The init's name lives in three places: nsenter sets it, and the C start and Go's readFifo tell by it
// whether the init has exec'd. A rename must reach all three.
func TestInitCommMatchesC(t *testing.T) {
	for _, f := range []string{"linux/nsenter/nsenter_linux.c", "linux/faststart/faststart_linux.c"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), `"`+initComm+`"`) {
			t.Errorf("%s does not name the init %q", f, initComm)
		}
	}
	if len(initComm) > 15 {
		t.Errorf("initComm %q is longer than a task's comm (15 bytes)", initComm)
	}
}
