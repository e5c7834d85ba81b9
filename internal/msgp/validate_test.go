package msgp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestValidateBoundsNesting(t *testing.T) {
	nested := func(depth int) []byte { return append(bytes.Repeat([]byte{0x91}, depth), 1) }
	if err := Validate(nested(MaxDepth)); err != nil {
		t.Errorf("nested to MaxDepth: %v", err)
	}
	if err := Validate(nested(MaxDepth + 1)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("nested past MaxDepth: %v, want ErrTooDeep", err)
	}
}

func TestValidateRefusesContainersAsMapKeys(t *testing.T) {
	for _, key := range [][]byte{{0x90}, {0x80}, {Array16, 0, 0}, {Map16, 0, 0}} {
		data := append(append([]byte{0x81}, key...), 1)
		if err := Validate(data); err == nil {
			t.Errorf("% x: a container as a map key passed", data)
		}
	}
}

// TestValidatedRewritesTimestampsThatLookLikeMaps: msgpack's decoder could
// read such a timestamp's payload as a map header; Validated hands it a
// copy in the 12-byte form instead, which reads as the same instant.
func TestValidatedRewritesTimestampsThatLookLikeMaps(t *testing.T) {
	when := time.Unix(1700000000, 936_000_000) // fixext8, payload starts 0xdf
	data := []byte("\xd7\xff\xdf\x28\xe8\x00\x65\x53\xf1\x00")
	if v, err := ReadAny(data); err != nil || !v.(time.Time).Equal(when) {
		t.Fatalf("the test's timestamp reads %v, %v; want %v", v, err, when)
	}
	out, err := Validated(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 15 || out[0] != 0xc7 || out[1] != 12 || isMapCode(out[3]) {
		t.Fatalf("rewritten as % x", out)
	}
	if v, err := ReadAny(out); err != nil || !v.(time.Time).Equal(when) {
		t.Fatalf("rewritten timestamp reads %v, %v; want %v", v, err, when)
	}
}
