package kvsession

// Pop returns the value under key, decoded as Get decodes it, and removes
// it from the session: a value meant for one use (a one-time token, a
// redirect target) cannot be read twice. The removal is saved with the
// response. A value Get could not decode is left in place and reported
// absent.
func (s *Session) Pop(key string) (any, bool) { return popAs(s, key, (*Session).readAny) }

// The typed Pop functions read as the typed getters do. A value of another
// type is not removed and gives false: a key the handler misread is still
// there for the code that knows its type.

// PopString is Pop for a string, read as GetString reads it.
func (s *Session) PopString(key string) (string, bool) {
	return popAs(s, key, (*Session).readString)
}

// PopInt64 is Pop for an integer, read as GetInt64 reads it.
func (s *Session) PopInt64(key string) (int64, bool) {
	return popAs(s, key, (*Session).readInt64)
}

// PopInt is Pop for an int, read as GetInt reads it.
func (s *Session) PopInt(key string) (int, bool) { return popAs(s, key, (*Session).readInt) }

// PopFloat64 is Pop for a float, read as GetFloat64 reads it.
func (s *Session) PopFloat64(key string) (float64, bool) {
	return popAs(s, key, (*Session).readFloat64)
}

// PopBool is Pop for a bool, read as GetBool reads it.
func (s *Session) PopBool(key string) (bool, bool) { return popAs(s, key, (*Session).readBool) }

// PopBytes is Pop for bytes, read as GetBytes reads them (a copy).
func (s *Session) PopBytes(key string) ([]byte, bool) {
	return popAs(s, key, (*Session).readBytes)
}

// PopDecode is Decode that removes the value once it has decoded into dst.
// It returns ErrKeyNotFound if there is no such value, the load error if
// the session could not be loaded, and the codec's error, with the value
// left in place, if the value does not decode into dst.
func (s *Session) PopDecode(key string, dst any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	i := s.find(key)
	if i < 0 {
		return ErrKeyNotFound
	}
	if err := s.c.cfg.Codec.Decode(s.entries[i].raw, dst); err != nil {
		return err
	}
	s.remove(i)
	return nil
}

// popAs reads the value under key as read does and removes it if read
// accepted it. Reading and removing under one hold of the lock means two
// goroutines of a request popping the same key cannot both get it.
func popAs[T any](s *Session, key string, read func(*Session, []byte) (T, bool)) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if s.load() != nil {
		return zero, false
	}
	i := s.find(key)
	if i < 0 {
		return zero, false
	}
	v, ok := read(s, s.entries[i].raw)
	if !ok {
		return zero, false
	}
	s.remove(i)
	return v, true
}
