package kvsession

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// TestResetForgetsEveryField fills every field of a pooled session's
// groups with something, releases it, and checks that nothing is left for
// the next request but empty buffers: a field added to a group without a
// reset of its own fails here, not in production.
func TestResetForgetsEveryField(t *testing.T) {
	s := &Session{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.Anonymous {
			continue // mu, c and e outlive requests
		}
		fill(t, v.Field(i), f.Name)
	}
	plain := s.plain
	s.reset()
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Anonymous {
			mustBeEmpty(t, v.Field(i), f.Name)
		}
	}
	for i, c := range plain[:cap(plain)] {
		if c != 0 {
			t.Fatalf("byte %d of the last cookie's plaintext survived reset", i)
		}
	}
}

// fill gives every field of v a non-zero value, through unexported fields.
func fill(t *testing.T, v reflect.Value, path string) {
	v = reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.String:
		v.SetString("x")
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 3, 8))
		for i := range 3 {
			fill(t, v.Index(i), path)
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(t, v.Index(i), path)
		}
	case reflect.Interface:
		switch {
		case v.Type() == reflect.TypeFor[error]():
			v.Set(reflect.ValueOf(errors.New("x")))
		case v.Type() == reflect.TypeFor[context.Context]():
			v.Set(reflect.ValueOf(context.Background()))
		default:
			t.Fatalf("%s: teach fill about %s", path, v.Type())
		}
	default:
		t.Fatalf("%s: teach fill about %s", path, v.Type())
	}
}

// mustBeEmpty fails unless v is its zero value, slices allowed to keep
// their capacity with no elements.
func mustBeEmpty(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	v = reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			mustBeEmpty(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() != 0 {
			t.Errorf("%s: %d elements survived reset", path, v.Len())
		}
	default:
		if !v.IsZero() {
			t.Errorf("%s survived reset: %v", path, v.Interface())
		}
	}
}
