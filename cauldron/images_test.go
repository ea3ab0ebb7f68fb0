package cauldron

import (
	"testing"
)

// An image path naming a device (/dev/zero would be read until memory runs out) or a directory
// is a counted bad_image skip.
func TestImagePathNotARegularFile(t *testing.T) {
	c := &imageColumn{name: "image", dir: t.TempDir()}
	for _, p := range []string{"/dev/zero", "."} {
		_, err := c.fromPath(p)
		if reason, ok := AsSkip(err); !ok || reason != ReasonBadImage {
			t.Errorf("%s: err = %v, want a bad_image skip", p, err)
			continue
		}
		t.Logf("%s: %v", p, err)
	}
}
